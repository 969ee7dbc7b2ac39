"""Per-camera state shared by the result loop (writer) and the HTTP threads (readers)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..config import PostConfig
from ..post import annotate_frame
from ..results import Result


@dataclass
class CameraView:
    """What the live view, /metrics and /healthz know about one camera."""

    name: str
    source: str  # already redacted: shown on the page
    stall_timeout: float
    live_fps: float = 5.0
    jpeg_quality: int = 80
    started: float = field(default_factory=time.monotonic)
    last_frame: float | None = None  # monotonic time of the last result
    frames: int = 0
    times: deque[float] = field(default_factory=lambda: deque(maxlen=32))  # recent result times
    score: float = 0.0
    person: bool = False  # an event is open
    events: int = 0
    jpeg: bytes | None = None
    seq: int = 0  # bumps with every new JPEG
    cond: threading.Condition = field(default_factory=threading.Condition)
    _last_jpeg: float = -1e9

    def update(self, result: Result, score: float, active: bool, annotated: bool, post: PostConfig) -> None:
        """One result: counters and state, and (throttled to ``live_fps``) a new annotated JPEG."""
        now = time.monotonic()
        self.times.append(now)
        if active and not self.person:
            self.events += 1
        self.last_frame, self.score, self.person = now, score, active
        self.frames += 1
        if now - self._last_jpeg < 1 / self.live_fps:
            return
        self._last_jpeg = now
        frame = result.frame
        if not annotated:  # the post stage drew nothing: draw on a copy, never on the shared frame
            frame = frame.copy()
            annotate_frame(frame, result.cam, result.is_person, result.detections, result.person_prob, post)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if ok:
            with self.cond:
                self.jpeg, self.seq = np.asarray(buf).tobytes(), self.seq + 1
                self.cond.notify_all()

    @property
    def fps(self) -> float:
        """Results per second over the last (up to) 32 results; results come in batches, so
        a rate from one gap alone would jump."""
        t = list(self.times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds since the last frame (since the start before the first one)."""
        now = time.monotonic() if now is None else now
        return now - (self.last_frame if self.last_frame is not None else self.started)

    def state(self) -> dict:
        age = self.stalled_for()
        return {"name": self.name, "source": self.source, "frames": self.frames, "fps": round(self.fps, 2),
                "seconds_since_last_frame": round(age, 2), "stalled": age > self.stall_timeout,
                "person": self.person, "score": round(self.score, 4), "events": self.events}
