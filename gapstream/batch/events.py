"""Per-file events: the intervals in which a person is present, by the live events' rule.

The same hysteresis as a camera's events (:class:`gapstream.events.Hysteresis`, configured by
the ``events`` section: on/off thresholds, ``min_frames``, ``hold_time``) on the person
probability, in file time: an interval opens at the first of the ``min_frames`` frames that
started it and closes at the first frame below ``off_threshold`` that was followed by
``hold_time`` seconds below it, so a one-frame dip does not split a person's presence in two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import EventsConfig
from ..events import Hysteresis


@dataclass
class Event:
    """One person-present interval. ``end``/``end_frame`` are exclusive (the first frame without)."""

    start: float  # seconds
    end: float
    start_frame: int
    end_frame: int
    peak_prob: float
    peak_frame: int

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("start", "end"):
            d[k] = round(d[k], 4)
        d["peak_prob"] = round(d["peak_prob"], 4)
        return d


class PresenceIntervals:
    """Builds :class:`Event`s from frames fed in order (``update``), then ``finish``."""

    def __init__(self, cfg: EventsConfig | None = None) -> None:
        self.events: list[Event] = []
        self._hyst = Hysteresis(cfg or EventsConfig())
        self._open: Event | None = None
        self._run_frame = 0  # index of the first frame of the current run above on_threshold
        self._below: int | None = None  # while open: first frame of the current stretch below off
        self._last: tuple[int, float] | None = None  # (frame, time) of the previous frame
        self._step = 0.0  # last frame interval, to end an interval still open at the end

    def update(self, frame: int, time: float, prob: float) -> None:
        """One frame: its index, its time in the file (s) and its person probability."""
        if self._last is not None:
            self._step = time - self._last[1]
        self._last = (frame, time)
        change = self._hyst.update(prob, time)
        if self._hyst.run == 1:
            self._run_frame = frame
        if change == "start":
            start = self._hyst.run_start if self._hyst.run_start is not None else time
            self._open = Event(start, start, self._run_frame, frame + 1, prob, frame)
        ev = self._open
        if ev is None:
            return
        below = self._hyst.below_since is not None
        self._below = (self._below if self._below is not None else frame) if below else None
        if prob > ev.peak_prob:
            ev.peak_prob, ev.peak_frame = prob, frame
        if change == "end":
            ev.end, ev.end_frame = self._hyst.below_since, self._below
            self.events.append(ev)
            self._open, self._below = None, None
        else:
            ev.end_frame = frame + 1

    def finish(self) -> list[Event]:
        """All events, closing one still open at the end of the file (after its last frame above
        ``off_threshold``, or at the end)."""
        if self._open is not None and self._last is not None:
            ev, self._open = self._open, None
            if self._below is not None and self._hyst.below_since is not None:
                ev.end, ev.end_frame = self._hyst.below_since, self._below
            else:
                ev.end, ev.end_frame = self._last[1] + self._step, self._last[0] + 1
            self.events.append(ev)
        return self.events


def person_seconds(events: list[Event]) -> float:
    """Total time with a person present."""
    return sum(e.seconds for e in events)
