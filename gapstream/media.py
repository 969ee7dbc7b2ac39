"""Media formats shared by sources, sinks and tools: image file extensions and sizes, H.264 encoding."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

log = logging.getLogger("gapstream.media")

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_EXTS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts", ".m4v", ".mpg", ".mpeg", ".flv"})


def _encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    if codec != "libx264":
        return {}
    options = {"crf": None if crf is None else str(crf), "preset": preset}
    return {k: v for k, v in options.items() if v is not None}


def check_encoder(codec: str, crf: int | None = None, preset: str | None = None) -> None:
    """Open the encoder once on a tiny frame, so that a bad option fails before a run starts.

    Raises ValueError (PyAV's ArgumentError is one) naming the codec and its options.
    """
    if codec not in av.codecs_available:
        return  # add_video_stream falls back to mpeg4
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 25)
    ctx.options = _encoder_options(codec, crf, preset)
    try:
        ctx.open()
    except av.error.FFmpegError as exc:
        raise ValueError(f"{codec} refuses options {ctx.options}") from exc


def add_video_stream(container: Any, width: int, height: int, rate: float | Fraction,
                     codec: str = "libx264", crf: int | None = None, preset: str | None = None) -> Any:
    """A yuv420p video stream of even size on an output container.

    Falls back to mpeg4 when ``codec`` is not in this FFmpeg build; ``crf`` and ``preset``
    apply to libx264 only.
    """
    if codec not in av.codecs_available:
        log.warning("codec %s unavailable, using mpeg4", codec)
        codec = "mpeg4"
    st = container.add_stream(codec, rate=rate)
    st.width, st.height = width - width % 2, height - height % 2
    st.pix_fmt = "yuv420p"
    st.options = _encoder_options(codec, crf, preset)
    return st


def encode(container: Any, stream: Any, frame: np.ndarray | av.VideoFrame | None = None) -> None:
    """Encode one RGB frame (array or VideoFrame) and mux its packets; ``None`` flushes the encoder."""
    if isinstance(frame, np.ndarray):
        frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
    for packet in stream.encode(frame):
        container.mux(packet)


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        # SOFn frame headers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not SOFs.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[i + 5:i + 7], "big"), int.from_bytes(head[i + 7:i + 9], "big")
        i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return None


def image_size(path: str) -> tuple[int, int] | None:
    """(h, w) of an image from its header (PNG, JPEG), else by decoding it; None if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    size = _png_size(head) or _jpeg_size(head)
    if size and all(size):
        return size
    img = cv2.imread(path)
    return None if img is None else img.shape[:2]


def letterbox(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """``frame`` scaled to fit ``height x width`` with its aspect kept, centred on black."""
    h, w = frame.shape[:2]
    s = min(height / h, width / w)
    nh, nw = min(height, max(1, round(h * s))), min(width, max(1, round(w * s)))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out[y:y + nh, x:x + nw] = cv2.resize(frame, (nw, nh), interpolation=interp)
    return out


_TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def upright(img: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame turned as its display matrix says (``rotation``: PyAV's ``frame.rotation``,
    counter-clockwise degrees, as FFmpeg's own players apply it)."""
    turn = round(-rotation / 90) * 90 % 360
    return cv2.rotate(img, _TURNS[turn]) if turn else img


class RgbConverter:
    """Decoded frames to RGB arrays through one swscale context, kept from frame to frame.

    ``frame.to_ndarray(format=...)`` sets up a new swscale context for every frame; keeping one
    (PyAV's ``VideoReformatter``, which sets it up again only when the sizes or formats change)
    saves 0.4 ms a 720p frame at full size and 1.3 ms when scaling to 640x352 on this machine
    (benchmarks/results/stop21.md). The pixels are the same. One converter per decoding loop.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, size: tuple[int, int] | None = None,
                 interpolation: str | None = None) -> np.ndarray:
        """``frame`` as RGB, at ``size`` (h, w) when given, else its own size (not turned upright)."""
        h, w = size or (None, None)
        return self._reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                          interpolation=interpolation).to_ndarray()

    def upright(self, frame: av.VideoFrame) -> np.ndarray:
        """``frame`` as an upright RGB array at its own size (a portrait phone clip stays portrait)."""
        img = self(frame)
        rotation = getattr(frame, "rotation", 0) or 0
        return upright(img, rotation) if rotation else img
