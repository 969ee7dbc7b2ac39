"""Frame sources: video files, network streams and webcams (PyAV/FFmpeg), image folders and a
synthetic source. Each yields RGB uint8 frames with a timestamp in seconds."""

from __future__ import annotations

import glob
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import av
import cv2
import numpy as np

from .config import SourceConfig
from .credentials import redact_text, redact_url
from .errors import SourceError
from .media import IMAGE_EXTS, VIDEO_EXTS, RgbConverter, image_size
from .rate import FramePicker
from .results import FrameRecord

log = logging.getLogger("gapstream.capture")

Pick = Callable[[float], bool] | None  # keep the frame at this source time? (rate.FramePicker)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp", "http", "https")


@dataclass
class SourceInfo:
    """What the pipeline needs to know about a source before frames flow."""

    uri: str
    kind: str  # file | stream | webcam | images | synthetic
    live: bool
    width: int
    height: int
    fps: float
    frames: int | None = None  # expected frame count when known
    shown: tuple[int, int] | None = None  # (w, h) of the first frame when it differs from the slot size
    decode_size: tuple[int, int] | None = None  # (h, w): convert straight to this size (files only)

    @property
    def name(self) -> str:
        """The URI as shown to the user: any password masked."""
        return redact_url(self.uri)

    def describe(self) -> str:
        """Size and rate as the user should see them (never just the ring's slot size)."""
        if self.kind in ("stream", "webcam"):
            # Only known once connected; the capture stage logs them then.
            return f"frames up to {self.width}x{self.height}"
        w, h = self.shown or (self.width, self.height)
        size = f"{w}x{h}" + (f", largest {self.width}x{self.height}" if (w, h) != (self.width, self.height)
                             else "")
        if self.kind == "images":
            return f"{self.frames} images, {size}"
        return f"{size} @ {self.fps:.2f} fps" + (f", {self.frames} frames" if self.frames else "")


def classify(uri: str) -> str:
    """The kind of source a URI names."""
    scheme = urlparse(uri).scheme.lower()
    if scheme == "synthetic":
        return "synthetic"
    if scheme in ("http", "https") and Path(urlparse(uri).path).suffix.lower() in VIDEO_EXTS:
        return "file"
    if scheme in STREAM_SCHEMES:
        return "stream"
    if uri.startswith("/dev/video") or scheme == "v4l2":
        return "webcam"
    if os.path.isdir(uri) or any(c in uri for c in "*?[") or Path(uri).suffix.lower() in IMAGE_EXTS:
        return "images"
    return "file"


def _image_files(uri: str) -> list[str]:
    if os.path.isdir(uri):
        files = [str(p) for p in sorted(Path(uri).iterdir()) if p.suffix.lower() in IMAGE_EXTS]
    else:
        files = sorted(f for f in glob.glob(uri) if Path(f).suffix.lower() in IMAGE_EXTS)
    return files


def _image_sizes(files: list[str]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(h, w) of the first readable image and the largest (h, w) of all, from the file headers.

    Unreadable images are skipped here as they are when frames are read.
    """
    sizes = [s for s in map(image_size, files) if s]
    if not sizes:
        raise SourceError(f"none of the {len(files)} images is readable (first: {files[0]})")
    return sizes[0], (max(h for h, _ in sizes), max(w for _, w in sizes))


def input_files(uri: str) -> list[str]:
    """The local files a source reads (an image folder's images); empty for other sources."""
    return _image_files(uri) if classify(uri) == "images" else []


def _synthetic_params(uri: str, cfg: SourceConfig) -> dict[str, Any]:
    q = {k: v[-1] for k, v in parse_qs(urlparse(uri).query).items()}
    try:
        p = {
            "width": int(q.get("width", 640)), "height": int(q.get("height", 480)),
            "fps": float(q.get("fps", cfg.fps)), "frames": int(q.get("frames", 0)) or None,
            "live": q.get("live", "0") in ("1", "true", "yes"),
        }
    except ValueError as exc:
        raise SourceError(f"bad synthetic source {uri!r}: {exc}") from None
    frames_ok = p["frames"] is None or p["frames"] > 0
    for key, ok, why in (("width", p["width"] >= 2, ">= 2"), ("height", p["height"] >= 2, ">= 2"),
                         ("fps", p["fps"] > 0, "> 0"), ("frames", frames_ok, "> 0")):
        if not ok:
            raise SourceError(f"bad synthetic source {uri!r}: {key} must be {why}")
    return p


def _av_error(uri: str, exc: Exception) -> SourceError:
    uri, msg = redact_url(uri), redact_text(str(exc))  # FFmpeg's message may echo the URL
    if isinstance(exc, av.error.FileNotFoundError):
        return SourceError(f"{uri}: no such file")
    if isinstance(exc, av.error.InvalidDataError) or "moov atom" in msg or "Invalid data" in msg:
        return SourceError(f"{uri}: not a readable video (corrupt, truncated, or not a video file)")
    return SourceError(f"{uri}: cannot open video ({msg})")


def probe(cfg: SourceConfig) -> SourceInfo:
    """Check a source and read its size and rate; raises SourceError with a clear message.

    Files and image folders are opened here, in the parent, so that bad input fails before
    any process starts. Live sources are only opened by the capture stage (they may need
    retries); their slots are sized by ``max_width`` x ``max_height``. An image folder is sized
    by its largest image, read from the file headers.
    """
    uri = cfg.uri
    if not uri:
        raise SourceError("no source given (pass SOURCE, or set source.uri in the config)")
    kind = classify(uri)
    name = redact_url(uri)
    if kind == "synthetic":
        p = _synthetic_params(uri, cfg)
        live = p["live"] if cfg.live is None else cfg.live
        return SourceInfo(uri, kind, live, p["width"], p["height"], p["fps"], p["frames"])
    if kind in ("stream", "webcam"):
        live = True if cfg.live is None else cfg.live
        if kind == "webcam" and not os.path.exists(uri.removeprefix("v4l2://")):
            raise SourceError(f"{name}: no such camera device")
        return SourceInfo(uri, kind, live, cfg.max_width, cfg.max_height, cfg.fps)
    if kind == "images":
        files = _image_files(uri)
        if not files:
            raise SourceError(f"{name}: no images found")
        (h, w), (max_h, max_w) = _image_sizes(files)
        return SourceInfo(uri, kind, bool(cfg.live), max_w, max_h, cfg.fps, len(files), shown=(w, h))
    if "://" not in uri and not os.path.exists(uri):
        raise SourceError(f"{name}: no such file")
    if os.path.isfile(uri) and os.path.getsize(uri) == 0:
        raise SourceError(f"{name}: empty file, not a video")
    try:
        with av.open(uri, timeout=cfg.open_timeout) as container:
            if not container.streams.video:
                raise SourceError(f"{name}: has no video stream")
            st = container.streams.video[0]
            w, h = st.codec_context.width, st.codec_context.height
            if not w or not h:
                raise SourceError(f"{name}: not a readable video (no frame size)")
            if _quarter_turned(container, st):
                w, h = h, w  # displayed upright, as the display matrix says
            rate = st.average_rate or st.guessed_rate or cfg.fps
            frames = st.frames or None
            if frames is None and st.duration and st.time_base:
                frames = round(float(st.duration * st.time_base) * float(rate))
            elif frames is None and container.duration:
                frames = round(container.duration / av.time_base * float(rate))
    except av.error.FFmpegError as exc:
        raise _av_error(uri, exc) from None
    return SourceInfo(uri, "file", bool(cfg.live), w, h, float(rate), frames)


def _quarter_turned(container: Any, st: Any) -> bool:
    """Whether the first frame's display matrix turns it by 90 or 270 degrees."""
    try:
        frame = next(container.decode(st))
    except (av.error.FFmpegError, StopIteration):
        return False  # the reader reports a file it cannot decode
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 2 == 1


def fit(frame: np.ndarray, max_h: int, max_w: int) -> np.ndarray:
    """Scale a frame down (keeping its aspect) so it fits ``max_h x max_w``."""
    h, w = frame.shape[:2]
    if h <= max_h and w <= max_w:
        return frame
    s = min(max_h / h, max_w / w)
    return cv2.resize(frame, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)


class FileTruncated(SourceError):
    """Decoding ended before the container's stated end."""


def read_file(info: SourceInfo, cfg: SourceConfig, pick: Pick = None) -> Iterator[tuple[np.ndarray, float]]:
    """Every frame of a video file (that ``pick`` keeps), in order; raises FileTruncated if the
    file ends early."""
    try:
        container = av.open(info.uri, timeout=cfg.open_timeout)
    except av.error.FFmpegError as exc:
        raise _av_error(info.uri, exc) from None
    with container:
        st = container.streams.video[0]
        st.thread_type = "AUTO"
        tb = float(st.time_base or 0)
        n = 0
        last_t = 0.0
        rgb = RgbConverter()
        try:
            for frame in container.decode(st):
                t = float(frame.pts * tb) if frame.pts is not None and tb else n / info.fps
                last_t = t
                n += 1
                if pick is None or pick(t):  # before the RGB conversion, the costly part
                    yield to_rgb(frame, info, rgb), t
        except av.error.FFmpegError as exc:
            raise FileTruncated(
                f"{info.name}: video is corrupt or truncated: decoding failed after {n} frames "
                f"({redact_text(str(exc))})"
            ) from None
        duration = float(container.duration or 0) / av.time_base if container.duration else 0.0
        if info.frames and duration and n < 0.9 * info.frames and last_t + 1.0 < duration:
            raise FileTruncated(
                f"{info.name}: video is truncated: got {n} of {info.frames} frames "
                f"(ended at {last_t:.1f} s of {duration:.1f} s)"
            )


def to_rgb(frame: Any, info: SourceInfo, rgb: RgbConverter) -> np.ndarray:
    """A decoded frame as upright RGB; with ``info.decode_size`` (h, w) scaled in the same swscale
    pass, which costs far less than full-size RGB followed by a resize when the model input is
    small. A rotated frame, or one whose size differs from the probed size, is converted at full
    size (turned upright; the capture stage fits it to its slot)."""
    size = info.decode_size
    if (size is None or getattr(frame, "rotation", 0)
            or (frame.height, frame.width) != (info.height, info.width)):
        return rgb.upright(frame)
    return rgb(frame, size, "AREA")


def read_images(info: SourceInfo) -> Iterator[tuple[np.ndarray, float]]:
    for i, path in enumerate(_image_files(info.uri)):
        img = cv2.imread(path)
        if img is None:
            log.warning("skipping unreadable image %s", path)
            continue
        yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB), i / info.fps


def read_synthetic(info: SourceInfo) -> Iterator[tuple[np.ndarray, float]]:
    """Moving bright figures on a textured background; paced at ``fps`` when live."""
    w, h, fps = info.width, info.height, info.fps
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    background = ((xx * 255 // max(w, 1)) ^ (yy * 255 // max(h, 1))).astype(np.uint8)
    background = np.stack([background, background // 2, 255 - background], axis=2)
    noise = rng.integers(0, 24, size=(h, w, 3), dtype=np.uint8)
    start = time.monotonic()
    i = 0
    while info.frames is None or i < info.frames:
        frame = background + noise
        cx = int((0.5 + 0.4 * math.sin(i / 15)) * w)
        bw, bh = max(w // 10, 2), max(h // 3, 2)
        cv2.rectangle(frame, (cx - bw // 2, h // 2 - bh // 2), (cx + bw // 2, h // 2 + bh // 2),
                      (230, 200, 180), -1)
        cv2.putText(frame, str(i), (8, max(h // 10, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255,) * 3, 1)
        if info.live:
            delay = start + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield frame, i / fps
        i += 1


class StreamReader:
    """A live stream or webcam that reconnects with exponential backoff.

    A source that never delivered a frame gets ``connect_attempts`` tries; once it has
    worked, ``reconnect_attempts`` consecutive tries after each drop (0 = forever).
    """

    def __init__(self, info: SourceInfo, cfg: SourceConfig, stop: Any, on_reconnect: Any = None,
                 t0: float | None = None, pick: Pick = None):
        self.info, self.cfg, self.stop, self.pick = info, cfg, stop, pick
        self.on_reconnect = on_reconnect or (lambda: None)
        self.t0 = t0

    def _open(self) -> Any:
        cfg, uri = self.cfg, self.info.uri
        options: dict[str, str] = {}
        fmt = None
        if uri.startswith(("rtsp://", "rtsps://")):
            # timeout: FFmpeg's socket I/O limit (microseconds), so that a stream that stalls
            # after connecting is noticed within open_timeout rather than waited on forever.
            options = {"rtsp_transport": cfg.rtsp_transport, "rtsp_flags": "prefer_tcp",
                       "timeout": str(int(cfg.open_timeout * 1e6))}
            if cfg.rtsp_transport == "udp":
                options.pop("rtsp_flags")
        elif self.info.kind == "webcam":
            fmt = "v4l2"
            uri = uri.removeprefix("v4l2://")
        # Small probe and no input buffering: latency matters more than stream analysis.
        options.update({"fflags": "nobuffer", "probesize": "500000", "analyzeduration": "1000000"})
        return av.open(uri, format=fmt, options=options, timeout=(cfg.open_timeout, cfg.open_timeout))

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        cfg = self.cfg
        failures = 0
        worked = False
        delay = cfg.backoff_initial
        start = self.t0 if self.t0 is not None else time.monotonic()
        while not self.stop.is_set():
            got = 0
            t_last = time.monotonic()  # last sign of life: the connect attempt or the latest frame
            try:
                with self._open() as container:
                    st = container.streams.video[0]
                    st.thread_type = "AUTO"
                    t_last = time.monotonic()
                    rgb = RgbConverter()  # per connection: a reconnect may bring another size
                    if worked:
                        log.info("reconnected to %s", self.info.name)
                        self.on_reconnect()
                    try:
                        for frame in container.decode(st):
                            if got == 0:
                                worked, failures, delay = True, 0, cfg.backoff_initial
                                rate = st.average_rate or st.guessed_rate
                                log.info("%s: %dx%d%s", self.info.name, frame.width, frame.height,
                                         f" @ {float(rate):.2f} fps" if rate else "")
                            got += 1
                            t = time.monotonic() - start
                            if self.pick is None or self.pick(t):
                                yield rgb.upright(frame), t
                            t_last = time.monotonic()
                            if self.stop.is_set():
                                return
                    except (av.error.FFmpegError, OSError):
                        if got and time.monotonic() - t_last >= 0.9 * cfg.open_timeout:
                            # Said now: closing the dead connection can take open_timeout again.
                            log.warning("%s: no packet for %g s: the stream stalled", self.info.name,
                                        cfg.open_timeout)
                        raise
                reason = "stream ended"
            except (av.error.FFmpegError, OSError, IndexError) as exc:
                # FFmpeg reports its own timeout as "Immediate exit requested" or "Invalid data".
                if time.monotonic() - t_last >= 0.9 * cfg.open_timeout:
                    reason = f"no answer within {cfg.open_timeout:g} s"
                else:
                    reason = redact_text(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
            if self.stop.is_set():
                return
            if got == 0:
                failures += 1
            limit = cfg.reconnect_attempts if worked else cfg.connect_attempts
            if limit and failures >= limit:
                if worked:
                    raise SourceError(
                        f"{self.info.name}: stream lost and {failures} reconnect attempts failed ({reason})"
                    )
                raise SourceError(f"cannot connect to {self.info.name} after {failures} attempts ({reason})")
            log.warning("%s: %s; retrying in %.1f s", self.info.name, reason, delay)
            self.stop.wait(delay)
            delay = min(delay * 2, cfg.backoff_max)


def frames(info: SourceInfo, cfg: SourceConfig, stop: Any, on_reconnect: Any = None,
           t0: float | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """The frame iterator for any kind of source, with ``source.stride`` / ``max_fps`` applied;
    live stream times count from ``t0`` (monotonic)."""
    picker = FramePicker(cfg)
    pick = picker if picker.active else None
    if info.kind == "file":
        return read_file(info, cfg, pick)
    if info.kind in ("images", "synthetic"):
        it = read_images(info) if info.kind == "images" else read_synthetic(info)
        return it if pick is None else ((f, t) for f, t in it if pick(t))
    return StreamReader(info, cfg, stop, on_reconnect, t0, pick).frames()


def run_stage(info: SourceInfo, cfg: SourceConfig, ring: Any, stop: Any, counters: Any,
              beat: Callable[[], None], first_index: int = 0, t0: float | None = None) -> None:
    """Capture process: frames from the source into the frame ring, in order.

    Offline sources wait for a free slot (no frame is lost); live sources take back the
    oldest waiting frame, or drop the new one, so that latency stays bounded.

    Counters: ``captured`` counts every frame decoded and kept by ``max_fps``/``stride``, also
    one then dropped; the ring's ``dropped`` counts the frames taken back or refused. So once a
    run has drained, inferred + dropped == captured.
    """
    slot_h, slot_w = ring.view(0)["frame"].shape[:2]
    seq = first_index  # a restarted capture (watchdog) goes on numbering where the last one ended
    try:
        for rgb, t in frames(info, cfg, stop, on_reconnect=lambda: counters.add("reconnects"), t0=t0):
            beat()
            if stop.is_set():
                break
            # Counted before any drop of it, so that a reader never sees dropped > captured for it.
            counters.add("captured")
            slot = ring.acquire(stop, drop_oldest=info.live, on_wait=beat)
            if slot is None:
                if stop.is_set():
                    break
                ring.count_drop()
                seq += 1
                continue
            src_h, src_w = rgb.shape[:2]
            rgb = fit(rgb, slot_h, slot_w)
            h, w = rgb.shape[:2]
            ring.view(slot)["frame"][:h, :w] = rgb
            if info.decode_size is not None and (h, w) == info.decode_size:
                # decoded straight to the model size: boxes go to the source's own size
                src_h, src_w = info.height, info.width
            ring.publish(slot, FrameRecord(index=seq, pts=t, h=h, w=w, t_cap=time.monotonic(),
                                           src_h=src_h, src_w=src_w), seq)
            seq += 1
    finally:
        ring.close_stream()
