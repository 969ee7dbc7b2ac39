"""The near-duplicate guard finds a re-encoded, resized, brightened copy of an eval clip and
passes footage of another scene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from gapstream.training.dedup import distance, thumbnails

from .helpers import make_video_frames


def scene(seed: int, h: int = 144, w: int = 256) -> list[np.ndarray]:
    """Two seconds of a smooth random scene panning slowly (a camera's view, not noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (9, 24, 3), dtype=np.uint8)
    big = cv2.resize(coarse, (w + 40, h), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(big[:, i * 2 : i * 2 + w]) for i in range(20)]


def test_a_copy_of_an_eval_clip_is_caught_and_another_scene_passes(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    make_video_frames(clips / "people" / "street.mp4", scene(1), fps=10)
    segments = [{"start": 0, "end": 2, "person": True}]
    (clips / "labels.json").write_text(json.dumps({"clips": [
        {"file": "people/street.mp4", "split": "eval", "segments": segments}]}))
    footage = tmp_path / "footage"
    copy = [np.clip(cv2.resize(f, (192, 108)).astype(np.int16) + 30, 0, 255).astype(np.uint8)
            for f in scene(1)]
    make_video_frames(footage / "reupload.mp4", copy[5:], fps=10)  # trimmed, smaller, brighter
    make_video_frames(footage / "noperson" / "other.mp4", scene(2), fps=10)
    ref = thumbnails(clips / "people" / "street.mp4")
    assert len(ref) == 2 and ref.shape[1] == 32 * 18
    assert distance(thumbnails(footage / "reupload.mp4", every_s=0.2), ref) < 0.05
    assert distance(thumbnails(footage / "noperson" / "other.mp4", every_s=0.2), ref) > 0.2
    cmd = [sys.executable, "-m", "gapstream.training.dedup", str(footage), "--against", str(clips)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "gapstream: error: 1 video(s) are near-duplicates of eval clips: reupload.mp4 ~ people/street.mp4"]
    assert r.stdout.splitlines()[0].endswith("reupload.mp4") and "other.mp4" in r.stdout
    (footage / "reupload.mp4").unlink()
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=120).returncode == 0
