"""Frame-rate limits applied in the capture stage, before a decoded frame is converted to RGB.

``source.stride`` keeps every Nth decoded frame; ``source.max_fps`` keeps a frame only when
at least ``1 / max_fps`` seconds of source time have passed since the last kept one. Frames
left out this way are not "dropped" (they were never wanted): the stats do not count them.
"""

from __future__ import annotations

from .config import SourceConfig


class FramePicker:
    """``picker(t)`` for each decoded frame at source time ``t``: keep it?"""

    def __init__(self, cfg: SourceConfig) -> None:
        self.stride = cfg.stride
        self.period = 1 / cfg.max_fps if cfg.max_fps else 0.0
        self._n = 0
        self._next_t: float | None = None

    @property
    def active(self) -> bool:
        return self.stride > 1 or self.period > 0

    def __call__(self, t: float) -> bool:
        n, self._n = self._n, self._n + 1
        if n % self.stride:
            return False
        if not self.period:
            return True
        if self._next_t is not None and t < self._next_t - 1e-6:
            return False
        # Step from the previous slot so the average rate holds; restart after a gap (a
        # reconnect, a seek) instead of letting a burst of frames catch up.
        if self._next_t is None or t - self._next_t > self.period:
            self._next_t = t + self.period
        else:
            self._next_t += self.period
        return True
