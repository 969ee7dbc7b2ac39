"""source.decode_to_model: frames converted straight to the model's input size when no output
needs them at full size; boxes stay in source pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import load_config
from gapstream.errors import ConfigError

from .helpers import make_video, make_video_frames


def test_decode_to_model_size_keeps_results_in_source_pixels(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=20, width=320, height=240)
    small = load_config(None, {"source.decode_to_model": True, "post.score_threshold": 0.0,
                               "output.stats_interval": 0})
    full = load_config(None, {"post.score_threshold": 0.0, "output.stats_interval": 0})
    got = [(r.frame.shape, r.probs.copy(), r.detections.xyxy.copy()) for r in
           Pipeline(str(clip), str(tiny_model), small).run()]
    ref = [r.probs.copy() for r in Pipeline(str(clip), str(tiny_model), full).run()]
    assert len(got) == len(ref) == 20
    for (shape, probs, boxes), ref_probs in zip(got, ref):
        assert shape == (64, 64, 3)  # the tiny model's input
        np.testing.assert_allclose(probs, ref_probs, atol=0.05)  # swscale's area filter vs OpenCV's
        if len(boxes):
            assert boxes[:, 2].max() <= 320 and boxes[:, 3].max() <= 240
            assert boxes[:, 2].max() > 64 or boxes[:, 3].max() > 64  # scaled to the source, not the input
    video = load_config(None, {"source.decode_to_model": True, "output.video": "x.mp4"})
    with pytest.raises(ConfigError, match="needs full-size frames"):
        Pipeline(str(clip), str(tiny_model), video).plan()


def test_cli_decodes_at_model_size_only_without_full_frame_outputs(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=15, width=320, height=240)
    for extra, direct in (([], True), (["--out", str(tmp_path / "o.mp4")], False)):
        r = subprocess.run([sys.executable, "-m", "gapstream", "run", str(clip), "--model", str(tiny_model),
                            "--json", str(tmp_path / "o.jsonl"), "--log-level", "DEBUG", *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
        assert [rec["frame"] for rec in lines] == list(range(15))
        assert ("decoding straight to the model's input size 64x64" in r.stderr) == direct


def test_one_swscale_context_gives_the_same_pixels(tmp_path: Path) -> None:
    """media.RgbConverter keeps one swscale context from frame to frame (faster); its frames, at
    full size and scaled as source.decode_to_model scales them, equal PyAV's per-frame conversion,
    also when the frame size changes between two calls."""
    import av

    from gapstream.media import RgbConverter

    rng = np.random.default_rng(0)
    clips = [make_video_frames(tmp_path / f"{w}.mp4", list(rng.integers(0, 255, (4, h, w, 3), np.uint8)))
             for w, h in ((160, 96), (128, 128))]
    rgb = RgbConverter()
    for clip in clips * 2:
        with av.open(str(clip)) as c:
            for frame in c.decode(video=0):
                assert np.array_equal(rgb(frame), frame.to_ndarray(format="rgb24"))
                scaled = frame.to_ndarray(format="rgb24", width=72, height=40, interpolation="AREA")
                assert np.array_equal(rgb(frame, (40, 72), "AREA"), scaled)
