"""Test helpers: a tiny randomly initialised dual-output GAP model, small generated videos and
the probes of what a pipeline may leave behind (shared memory, stage processes)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import av
import numpy as np
import pytest

from gapstream.media import add_video_stream, encode


def make_tiny_model(out_dir: Path, size: int = 64, channels: int = 16, seed: int = 0) -> Path:
    """A small random dual-output (probabilities, conv maps) float TFLite model plus sidecar."""
    tf = pytest.importorskip("tensorflow")
    from gapstream.meta import ModelMeta, save_meta

    tf.keras.utils.set_random_seed(seed)
    keras = tf.keras
    inp = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    for c in (8, 8, 16, 16, channels):
        x = keras.layers.Conv2D(c, 3, strides=2, padding="same", activation="relu")(x)
    gap = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    probs = dense(gap)
    model = keras.Model(inp, [probs, x])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tiny_float32.tflite"
    path.write_bytes(conv.convert())
    kernel, bias = dense.get_weights()
    save_meta(ModelMeta(labels=["no_person", "person"], person_index=1, input_size=(size, size),
                        dense_kernel=kernel, dense_bias=bias, backbone="tiny-test", alpha=1.0), path)
    return path


def shm_segments(pid: int | None = None) -> set[str]:
    """Shared-memory rings created by process ``pid`` (default: this one); names carry the pid."""
    prefix = f"gapstream_{pid or os.getpid()}_"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


def gapstream_children() -> list:
    """Stage processes of this process that are still alive."""
    return [p for p in mp.active_children() if p.name.startswith("gapstream-")]


def make_video_frames(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """An H.264 video of the given RGB frames (all of one size), made beside its parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        st = add_video_stream(c, w, h, fps, "libx264")
        for img in frames:
            encode(c, st, img)
        encode(c, st)
    return path


def make_video(path: Path, frames: int = 30, width: int = 160, height: int = 120, fps: int = 15,
               codec: str = "libx264") -> Path:
    """A small video whose frames carry their index as a gray level, for order checks."""
    with av.open(str(path), "w") as c:
        st = add_video_stream(c, width, height, fps, codec)
        for i in range(frames):
            img = np.full((height, width, 3), (i * 8) % 256, np.uint8)
            img[height // 4 : 3 * height // 4, (i * 3) % width : (i * 3) % width + width // 8] = 255
            encode(c, st, img)
        encode(c, st)
    return path
