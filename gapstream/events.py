"""Person events per camera: hysteresis on the person score, and the event record.

An event starts once the score has been at or above ``on_threshold`` for ``min_frames``
consecutive frames, and ends once it has stayed below ``off_threshold`` for ``hold_time``
seconds; between the two thresholds it keeps its state, so a score hovering around one
threshold does not flicker. The event keeps its peak frame for the snapshots.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import cv2
import numpy as np

from .config import EventsConfig, PostConfig
from .errors import OutputError
from .post import annotate_frame
from .results import Result


class Hysteresis:
    """The on/off decision; ``update`` returns "start", "end" or None."""

    def __init__(self, cfg: EventsConfig) -> None:
        self.cfg = cfg
        self.on = False
        self._run = 0  # consecutive frames at or above on_threshold while off
        self.run_start: float | None = None  # time of the first of those frames
        self.below_since: float | None = None  # while on: when the score fell below off_threshold

    @property
    def run(self) -> int:
        """Consecutive frames at or above ``on_threshold`` while off (reset when an event starts)."""
        return self._run

    def update(self, score: float, t: float) -> str | None:
        cfg = self.cfg
        if not self.on:
            if score >= cfg.on_threshold:
                self._run += 1
                if self._run == 1:
                    self.run_start = t
                if self._run >= cfg.min_frames:
                    self.on, self._run, self.below_since = True, 0, None
                    return "start"
            else:
                self._run = 0
            return None
        if score >= cfg.off_threshold:
            self.below_since = None
        elif self.below_since is None:
            self.below_since = t
        if self.below_since is not None and t - self.below_since >= cfg.hold_time:
            self.on = False
            return "end"
        return None


@dataclass
class Event:
    """One person event on one camera. Times are Unix seconds; ``peak_cam`` is (x, y) in [0, 1]."""

    camera: str
    id: str
    start: float
    start_pts: float
    # Unix time the first frame of the event (the first of its min_frames) was captured: with
    # the arrival of the event's message, the latency from a person's appearance to the alert.
    start_capture: float | None = None
    end: float | None = None
    peak_prob: float = 0.0
    peak_time: float = 0.0
    peak_cam: tuple[float, float] = (0.0, 0.0)
    boxes: list = field(default_factory=list)
    zones: dict[str, float] = field(default_factory=dict)  # highest score per zone
    frames: int = 0
    snapshot: str | None = None
    snapshot_cam: str | None = None
    clip: str | None = None  # set when a clip recorder takes the event (gapstream/record.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera, "id": self.id, "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3), "start_pts": round(self.start_pts, 3),
            "start_capture": None if self.start_capture is None else round(self.start_capture, 3),
            "peak_prob": round(self.peak_prob, 4), "peak_time": round(self.peak_time, 3),
            "peak_cam": [round(v, 3) for v in self.peak_cam], "boxes": self.boxes,
            "zones": {k: round(v, 4) for k, v in self.zones.items()}, "frames": self.frames,
            "snapshot": self.snapshot, "snapshot_cam": self.snapshot_cam, "clip": self.clip,
        }


class EventListener(Protocol):
    """Gets every event when it starts and again when it ends (``event.end`` set)."""

    def event_started(self, event: Event) -> None: ...

    def event_ended(self, event: Event) -> None: ...


class EventTracker:
    """One camera's events: feeds the hysteresis, follows the peak, tells the listeners."""

    _ids = itertools.count(1)

    def __init__(self, camera: str, cfg: EventsConfig, post: PostConfig,
                 listeners: list[EventListener]) -> None:
        self.camera, self.cfg, self.post = camera, cfg, post
        self.listeners = listeners
        self.hysteresis = Hysteresis(cfg)
        self.event: Event | None = None
        self._peak: tuple[np.ndarray, np.ndarray, Result] | None = None  # frame copy, cam, result
        self._run_captured = 0.0  # capture time of the first frame of the current run
        self._t0 = time.time()

    def update(self, result: Result, score: float, zones: dict[str, float], now: float) -> None:
        """One frame: its event score (the person probability, or the best zone score) at ``now``."""
        change = self.hysteresis.update(score, now)
        if self.hysteresis.run == 1 or (change == "start" and self.cfg.min_frames <= 1):
            self._run_captured = result.captured_at
        if change == "start":
            start = self.hysteresis.run_start or now
            # The pts of the first qualifying frame, from this frame's pts and the wall-clock gap.
            self.event = Event(self.camera, f"{int(self._t0)}-{next(self._ids)}", start,
                               max(0.0, result.pts - (now - start)), self._run_captured or None)
        ev = self.event
        if ev is not None:
            ev.frames += 1
            for k, v in zones.items():
                ev.zones[k] = max(ev.zones.get(k, 0.0), v)
            if score > ev.peak_prob or self._peak is None:
                ev.peak_prob, ev.peak_time = score, now
                r, c = np.unravel_index(int(np.argmax(result.cam)), result.cam.shape)
                ev.peak_cam = ((c + 0.5) / result.cam.shape[1], (r + 0.5) / result.cam.shape[0])
                ev.boxes = result.detections.to_list()
                self._peak = (result.frame.copy(), result.cam.copy(), result)
            if change == "start":
                for li in self.listeners:
                    li.event_started(ev)
        if change == "end":
            self.finish(self.hysteresis.below_since or now)

    def finish(self, end: float | None = None) -> None:
        """End the open event (at ``end``, default now), e.g. when the stream ends."""
        ev, self.event = self.event, None
        if ev is None:
            return
        ev.end = end if end is not None else time.time()
        self.hysteresis = Hysteresis(self.cfg)
        if self.cfg.snapshots and self._peak is not None:
            ev.snapshot, ev.snapshot_cam = save_snapshots(Path(self.cfg.snapshots), ev, *self._peak,
                                                          self.post)
        self._peak = None
        for li in self.listeners:
            li.event_ended(ev)


def save_snapshots(folder: Path, ev: Event, frame: np.ndarray, cam: np.ndarray, result: Result,
                   post: PostConfig) -> tuple[str, str]:
    """The peak frame as ``<camera>-<id>.jpg`` and, with the CAM overlay and boxes, ``...-cam.jpg``."""
    clean, overlay = folder / f"{ev.camera}-{ev.id}.jpg", folder / f"{ev.camera}-{ev.id}-cam.jpg"
    drawn = frame.copy()
    annotate_frame(drawn, cam, True, result.detections, result.person_prob, post)
    for path, img in ((clean, frame), (overlay, drawn)):
        if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"cannot write snapshot {path}")
    return str(clean), str(overlay)


class EventLog:
    """Finished events as JSON Lines, one line per event, flushed at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._f: IO[str] | None = open(path, "a", buffering=1)  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None

    def event_started(self, event: Event) -> None:
        pass

    def event_ended(self, event: Event) -> None:
        if self._f is None:
            return
        try:
            self._f.write(json.dumps(event.to_dict()) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            f.close()
