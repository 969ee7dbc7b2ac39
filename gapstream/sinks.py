"""Sinks: where results go (annotated video, JSON Lines, a window).

Every sink is a context manager implementing :class:`Sink`: it opens in its constructor (so
that a bad path fails before any frame flows), writes one :class:`Result` at a time and
closes on exit. Any failure to write is an :class:`OutputError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, runtime_checkable

import av
import cv2

from .config import OutputConfig
from .errors import OutputError
from .media import add_video_stream, check_encoder, encode, letterbox
from .results import Result

log = logging.getLogger("gapstream.sinks")


@runtime_checkable
class Sink(Protocol):
    """A consumer of results; ``quit`` turns true when the sink wants the pipeline to stop."""

    quit: bool

    def __enter__(self) -> Sink: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def write(self, result: Result) -> None: ...


def _reason(exc: Exception) -> str:
    """The OS's words for a failed write (say "No space left on device"), else the message."""
    return getattr(exc, "strerror", None) or str(exc)


class _ClosingSink:
    """Context-manager plumbing shared by the sinks: ``__exit__`` calls ``close``.

    A file sink that got no frame is removed on close (an empty video cannot be played), so
    that a run that failed before its first frame leaves no empty output behind.
    """

    quit = False
    path: Path | None = None
    frames = 0
    failed = False  # a write or the close failed: the file is cut mid-record, so it is removed

    def __enter__(self) -> _ClosingSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except OutputError:
            if exc is None:
                raise
            # The run is already failing; its first error is the one to report.
            log.debug("closing %s after an earlier error", self.path, exc_info=True)
        finally:
            # Regular files only: never a device such as /dev/null.
            if self.path is not None and (self.frames == 0 or self.failed) and self.path.is_file():
                if self.frames:
                    log.warning("removed the partial output %s (it could not be completed)", self.path)
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def close(self) -> None:
        """Release what the sink holds; safe to call twice."""


class VideoSink(_ClosingSink):
    """Annotated video through PyAV; keeps the source frame rate and the first frame's size
    (a later frame of another size is letterboxed into it, never cropped).

    Offline frames get consecutive timestamps; live frames are placed by their capture
    time, so dropped frames leave gaps instead of speeding the video up.
    """

    def __init__(self, path: str, fps: float, live: bool, cfg: OutputConfig) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise OutputError(f"output folder {self.path.parent} does not exist")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.live = live
        self.cfg = cfg
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._last_pts = -1
        try:
            check_encoder(cfg.codec, cfg.crf, cfg.preset)
        except ValueError as exc:
            raise OutputError(f"invalid encoder settings (output.codec {cfg.codec!r}, output.preset "
                              f"{cfg.preset!r}, output.crf {cfg.crf}): {exc}") from None
        try:
            open(self.path, "wb").close()  # noqa: SIM115 - fail now on a read-only folder, not at frame 1
            self._container = av.open(str(self.path), mode="w")
        except OSError as exc:
            raise OutputError(f"cannot write video {self.path}: {exc.strerror}") from None
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"cannot write video {self.path}: {exc}") from None

    def write(self, result: Result) -> None:
        try:
            self._write(result)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.failed = True
            raise OutputError(f"cannot write video {self.path}: {_reason(exc)}") from None

    def _write(self, result: Result) -> None:
        frame = result.frame
        if self._stream is None:
            # No libavcodec thread_type here: x264 threads itself, and AUTO halved its speed.
            self._stream = add_video_stream(self._container, frame.shape[1], frame.shape[0], self.rate,
                                            self.cfg.codec, self.cfg.crf, self.cfg.preset)
        st = self._stream
        h, w = frame.shape[:2]
        if (h, w) != (st.height, st.width):
            if h - st.height in (0, 1) and w - st.width in (0, 1):  # odd size: the stream is even
                frame = frame[: st.height, : st.width]
            else:  # the source changed size (image folder, stream reconnect): whole frame, letterboxed
                frame = letterbox(frame, st.height, st.width)
        # OpenCV's RGB->I420 is about 5x faster than PyAV's swscale conversion of rgb24.
        vf = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        pts = self.frames if not self.live else max(self._last_pts + 1, round(result.pts * self.rate))
        vf.pts = self._last_pts = int(pts)
        vf.time_base = 1 / self.rate
        encode(self._container, st, vf)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            if self._stream is not None:
                encode(container, self._stream)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.failed = True
            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
                container.close()
            raise OutputError(f"cannot finish video {self.path}: {_reason(exc)}") from None
        try:
            container.close()
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.failed = True
            raise OutputError(f"cannot finish video {self.path}: {_reason(exc)}") from None


class JsonlSink(_ClosingSink):
    """One JSON object per frame: index, timestamp, person probability, boxes with scores.

    Flushed at least every ``flush_every`` seconds so that live runs can be followed with
    ``tail -f`` without a write per frame.
    """

    def __init__(self, path: str, flush_every: float = 0.5) -> None:
        stdout = path == "-"
        self.path = None if stdout else Path(path)
        self._name = "standard output" if stdout else path
        self.frames = 0
        self.flush_every = flush_every
        self._last_flush = time.monotonic()
        try:
            # "-": JSON Lines on stdout (the logs stay on stderr); stdout itself is not closed.
            self._f: IO[str] | None = open(sys.stdout.fileno() if stdout else path, "w",  # noqa: SIM115
                                           buffering=1 << 16, closefd=not stdout)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None

    def write(self, result: Result) -> None:
        assert self._f is not None
        try:
            self._f.write(json.dumps(result.to_dict()) + "\n")
            self.frames += 1
            now = time.monotonic()
            if now - self._last_flush >= self.flush_every:
                self._f.flush()
                self._last_flush = now
        except OSError as exc:
            self.failed = True
            raise OutputError(f"cannot write {self._name}: {_reason(exc)}") from None

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError as exc:
                self.failed = True
                raise OutputError(f"cannot write {self._name}: {_reason(exc)}") from None


class WindowSink(_ClosingSink):
    """An OpenCV window; press q or Esc to stop."""

    def __init__(self, title: str = "gapstream") -> None:
        self.title = title
        self.quit = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OutputError(
                "--show needs OpenCV with GUI support and a display "
                "(pip install opencv-python instead of opencv-python-headless)"
            ) from None

    def write(self, result: Result) -> None:
        cv2.imshow(self.title, cv2.cvtColor(result.frame, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit = True

    def close(self) -> None:
        with contextlib.suppress(cv2.error):  # the user may have closed the window already
            cv2.destroyWindow(self.title)


def sink_factories(cfg: OutputConfig, fps: float, live: bool) -> list[Callable[[], Sink]]:
    """How to open each sink an output config asks for (opened one by one by the caller's stack)."""
    factories: list[Callable[[], Sink]] = []
    if cfg.json:
        factories.append(lambda: JsonlSink(cfg.json or ""))
    if cfg.video:
        factories.append(lambda: VideoSink(cfg.video or "", fps, live, cfg))
    if cfg.show:
        factories.append(WindowSink)
    return factories
