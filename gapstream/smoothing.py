"""Temporal smoothing of the person probability: one camera's score history.

A person found in some frames of a second and missed in the others, and a look-alike
flagged for a frame or two, are the commonest errors on real footage. Video analytics
decide on a short score history rather than on one frame (Frigate compares the median of
a tracked object's scores with its threshold); here it is the median (or mean) of the
person probability over the frames of the last ``window_s`` seconds, causal, so that a
live run decides on what it has seen. The minimum (``how="min"``) says whether a probability
has stayed up for the whole window (``post.zoom_sustain_s``).
"""

from __future__ import annotations

from collections import deque

import numpy as np

#: Timestamps closer than this are one instant: frame times such as 0.7 - 0.5 must not let the
#: frame at 0.2 in or out by a rounding error.
_EPS = 1e-6


class ScoreHistory:
    """One camera's recent person probabilities; :meth:`update` is called once per frame, in order."""

    def __init__(self, window_s: float, how: str = "median") -> None:
        self.window_s = window_s
        self.how = how
        self._pts: deque[float] = deque()
        self._probs: deque[float] = deque()

    def update(self, pts: float, prob: float) -> float:
        """The smoothed probability at ``pts``: over the frames with timestamps in
        (pts - window_s, pts], this one included. A timestamp that goes back (a new stream
        after a reconnect) starts the history afresh."""
        if self._pts and pts < self._pts[-1]:
            self._pts.clear()
            self._probs.clear()
        self._pts.append(pts)
        self._probs.append(prob)
        while len(self._pts) > 1 and self._pts[0] <= pts - self.window_s + _EPS:  # keeps this frame
            self._pts.popleft()
            self._probs.popleft()
        values = np.fromiter(self._probs, np.float64, len(self._probs))
        if self.how == "min":
            return float(values.min())
        return float(np.median(values) if self.how == "median" else values.mean())


def with_person_prob(probs: np.ndarray, person_index: int, prob: float) -> np.ndarray:
    """``probs`` with the person class set to ``prob`` and the other classes scaled to share
    the rest in their own proportions (evenly if they had none)."""
    out = probs.astype(np.float32, copy=True)
    others = np.arange(len(out)) != person_index
    rest = float(out[others].sum())
    out[others] = out[others] * ((1.0 - prob) / rest) if rest > 0 else (1.0 - prob) / max(1, others.sum())
    out[person_index] = prob
    return out
