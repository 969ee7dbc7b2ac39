"""Per-file events: the intervals in which a person is present, from the per-frame decisions.

A stand-in until the real event detector (with hysteresis) exists: an interval opens at the
first frame decided "person" and closes at the first frame that is not. Replace this module,
keeping :class:`PresenceIntervals`' ``update``/``finish``, to change what events.jsonl holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    """Builds :class:`Event`s from frames fed in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._open: Event | None = None
        self._last: tuple[int, float] | None = None  # (frame, time) of the previous frame
        self._step = 0.0  # last frame interval, to end an interval still open at the end

    def update(self, frame: int, time: float, prob: float, person: bool) -> None:
        if self._last is not None:
            self._step = time - self._last[1]
        self._last = (frame, time)
        ev = self._open
        if person and ev is None:
            self._open = Event(time, time, frame, frame + 1, prob, frame)
        elif person and ev is not None:
            ev.end_frame = frame + 1
            if prob > ev.peak_prob:
                ev.peak_prob, ev.peak_frame = prob, frame
        elif ev is not None:
            ev.end, ev.end_frame = time, frame
            self.events.append(ev)
            self._open = None

    def finish(self) -> list[Event]:
        """All events, closing one still open at the end of the file."""
        if self._open is not None and self._last is not None:
            ev, self._open = self._open, None
            ev.end, ev.end_frame = self._last[1] + self._step, self._last[0] + 1
            self.events.append(ev)
        return self.events


def person_seconds(events: list[Event]) -> float:
    """Total time with a person present."""
    return sum(e.seconds for e in events)
