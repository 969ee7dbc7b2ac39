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

WANTED_FOR = 10.0  # seconds a latest.jpg request keeps the JPEGs coming


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
    jpeg_time: float = -1e9  # monotonic time the JPEG was made
    seq: int = 0  # bumps with every new JPEG
    cond: threading.Condition = field(default_factory=threading.Condition)
    # JPEGs are made only while someone looks: an open MJPEG stream, or a latest.jpg request
    # within WANTED_FOR seconds (a camera nobody watches costs no encoding).
    watchers: int = 0
    wanted_until: float = -1e9
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
        if self.jpeg is not None and self.watchers == 0 and now > self.wanted_until:
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
                self.jpeg, self.seq, self.jpeg_time = np.asarray(buf).tobytes(), self.seq + 1, now
                self.cond.notify_all()

    def fresh_jpeg(self) -> bytes | None:
        """The latest JPEG, waiting up to two frame intervals for a new one when it is stale
        (nobody was watching, so none was made)."""
        with self.cond:
            self.wanted_until = time.monotonic() + WANTED_FOR
            if time.monotonic() - self.jpeg_time > 2 / self.live_fps:
                seq = self.seq
                self.cond.wait_for(lambda: self.seq != seq, timeout=2 / self.live_fps)
            return self.jpeg

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
