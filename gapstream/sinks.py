"""Sinks: where results go (annotated video, JSON Lines, a window)."""

from __future__ import annotations

import json
import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Protocol

import av
import cv2

from .config import OutputConfig
from .errors import GapstreamError

log = logging.getLogger("gapstream.sinks")


class Sink(Protocol):
    def write(self, result: Any) -> None: ...

    def close(self) -> None: ...


class VideoSink:
    """Annotated video through PyAV; keeps the source frame rate.

    Offline frames get consecutive timestamps; live frames are placed by their capture
    time, so dropped frames leave gaps instead of speeding the video up.
    """

    def __init__(self, path: str, fps: float, live: bool, cfg: OutputConfig) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise GapstreamError(f"output folder {self.path.parent} does not exist")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.live = live
        self.cfg = cfg
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._last_pts = -1
        try:
            self._container = av.open(str(self.path), mode="w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise GapstreamError(f"cannot write video {self.path}: {exc}") from None

    def _open_stream(self, width: int, height: int) -> None:
        codec = self.cfg.codec
        if codec not in av.codecs_available:
            log.warning("codec %s unavailable, using mpeg4", codec)
            codec = "mpeg4"
        st = self._container.add_stream(codec, rate=self.rate)
        st.width, st.height = width - width % 2, height - height % 2
        st.pix_fmt = "yuv420p"
        if codec == "libx264":
            st.options = {"crf": str(self.cfg.crf), "preset": self.cfg.preset}
        # No libavcodec thread_type here: x264 threads itself, and AUTO halved its speed.
        self._stream = st

    def write(self, result: Any) -> None:
        frame = result.frame
        if self._stream is None:
            self._open_stream(frame.shape[1], frame.shape[0])
        st = self._stream
        if frame.shape[0] != st.height or frame.shape[1] != st.width:
            frame = frame[: st.height, : st.width]
            if frame.shape[0] != st.height or frame.shape[1] != st.width:  # source size changed
                frame = cv2.resize(result.frame, (st.width, st.height))
        # OpenCV's RGB->I420 is about 5x faster than PyAV's swscale conversion of rgb24.
        vf = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        pts = self.frames if not self.live else max(self._last_pts + 1, round(result.pts * self.rate))
        vf.pts = self._last_pts = int(pts)
        vf.time_base = 1 / self.rate
        for packet in st.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None


class JsonlSink:
    """One JSON object per frame: index, timestamp, person probability, boxes with scores.

    Flushed at least every ``flush_every`` seconds so that live runs can be followed with
    ``tail -f`` without a write per frame.
    """

    def __init__(self, path: str, flush_every: float = 0.5) -> None:
        self.flush_every = flush_every
        self._last_flush = time.monotonic()
        try:
            self._f: IO[str] | None = open(path, "w", buffering=1 << 16)  # noqa: SIM115
        except OSError as exc:
            raise GapstreamError(f"cannot write {path}: {exc.strerror}") from None

    def write(self, result: Any) -> None:
        assert self._f is not None
        self._f.write(json.dumps(result.to_dict()) + "\n")
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every:
            self._f.flush()
            self._last_flush = now

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class WindowSink:
    """An OpenCV window; press q or Esc to stop."""

    def __init__(self, title: str = "gapstream") -> None:
        self.title = title
        self.quit = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise GapstreamError(
                "--show needs OpenCV with GUI support and a display "
                "(pip install opencv-python instead of opencv-python-headless)"
            ) from None

    def write(self, result: Any) -> None:
        cv2.imshow(self.title, cv2.cvtColor(result.frame, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit = True

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def build_sinks(cfg: OutputConfig, fps: float, live: bool) -> list[Any]:
    """The sinks an output config asks for, opened now so that bad paths fail early."""
    sinks: list[Any] = []
    try:
        if cfg.json:
            sinks.append(JsonlSink(cfg.json))
        if cfg.video:
            sinks.append(VideoSink(cfg.video, fps, live, cfg))
        if cfg.show:
            sinks.append(WindowSink())
    except GapstreamError:
        for s in sinks:
            s.close()
        raise
    return sinks
