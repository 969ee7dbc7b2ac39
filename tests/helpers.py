"""Test helpers: a tiny randomly initialised dual-output GAP model, a hand-made "brightness"
model, small generated videos and the probes of what a pipeline may leave behind (shared
memory, stage processes)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
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


def brightness_model(out_dir: Path, input_hw: tuple[int, int] = (64, 112), keep_aspect: bool = True) -> Path:
    """A fully convolutional float model: person logit grows with the brightness of each cell.

    Stride 16 (4 stride-2 average poolings); maps are the mean grey level per cell (1 channel).
    """
    tf = pytest.importorskip("tensorflow")
    from gapstream.meta import ModelMeta, save_meta

    keras = tf.keras
    h, w = input_hw
    inp = keras.Input((h, w, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=3, keepdims=True))(x)
    for _ in range(4):
        x = keras.layers.AveragePooling2D(2)(x)
    maps = x
    gap = keras.layers.GlobalAveragePooling2D()(maps)
    dense = keras.layers.Dense(2, activation="softmax")
    probs = dense(gap)
    dense.set_weights([np.array([[-20.0, 20.0]], np.float32), np.array([10.0, -10.0], np.float32)])
    model = keras.Model(inp, [probs, maps])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bright_float32.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    kernel, bias = dense.get_weights()
    save_meta(ModelMeta(labels=["no_person", "person"], person_index=1, input_size=(h, w),
                        dense_kernel=kernel, dense_bias=bias, backbone="brightness-test", alpha=1.0,
                        output_stride=16,
                        input_mode="keep_aspect" if keep_aspect else "fixed"), path)
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


def make_grey_clips(root: Path, fps: int = 10) -> list[dict]:
    """Two labelled val clips of plain grey frames for :func:`brightness_model`, which scores grey
    138 between 0.5 and 1 and grey 230 about 1: a person clip (230, then 138) and an empty one (30,
    then 138), 2 s each. Writes ``root/labels.json`` and returns its clip list."""
    def grey(levels: list[int]) -> list[np.ndarray]:
        return [np.full((72, 128, 3), v, np.uint8) for v in levels]

    make_video_frames(root / "people" / "walk.mp4", grey([230] * 10 + [138] * 10), fps)
    make_video_frames(root / "noperson" / "yard.mp4", grey([30] * 10 + [138] * 10), fps)
    clips = [{"file": f, "split": "val", "segments": [{"start": 0.0, "end": 2.0, "person": p}]}
             for f, p in (("people/walk.mp4", True), ("noperson/yard.mp4", False))]
    (root / "labels.json").write_text(json.dumps({"clips": clips}))
    return clips


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


def private_mounts_unavailable() -> str | None:
    """Why a test cannot mount its own tmpfs in a private mount namespace (None: it can)."""
    if os.geteuid() != 0:
        return "needs root for a private mount namespace (unshare -m)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", "/mnt"],
                           capture_output=True)
    if probe.returncode != 0:
        return f"cannot mount in a private namespace: {probe.stderr.decode().strip()}"
    return None


@dataclass
class MountedRun:
    returncode: int
    stdout: str
    stderr: str
    pid: int  # of the gapstream process
    left: dict[str, list[str]]  # what each mounted folder held after the run


def run_with_tmpfs(mounts: dict[str, str], *args: str, timeout: float = 180) -> MountedRun:
    """``gapstream run ARGS`` with a fresh tmpfs (``{folder: mount options}``, e.g. ``size=64k``)
    on each folder, in a private mount namespace that disappears with the run; skips when that
    is impossible here."""
    why = private_mounts_unavailable()
    if why:
        pytest.skip(why)
    mount = " && ".join(f"mount -t tmpfs -o {shlex.quote(o)} tmpfs {shlex.quote(d)}"
                        for d, o in mounts.items())
    listing = "; ".join(f"echo '@@ {d}'; ls -A {shlex.quote(d)}" for d in mounts)
    script = (f'{mount} || exit 99; "$@" & pid=$!; echo "@@pid $pid" >&2; wait $pid; rc=$?; '
              f'{listing}; exit $rc')
    cmd = ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-m", "gapstream", "run", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode != 99, r.stderr
    out, _, tail = r.stdout.partition("@@ ")
    left: dict[str, list[str]] = {}
    for block in ("@@ " + tail).split("@@ ")[1:]:
        folder, *names = block.splitlines()
        left[folder] = names
    err_lines = r.stderr.splitlines()
    pid = int(next(line.split()[1] for line in err_lines if line.startswith("@@pid")))
    err = "\n".join(line for line in err_lines if not line.startswith("@@pid"))
    return MountedRun(r.returncode, out, err, pid, left)
