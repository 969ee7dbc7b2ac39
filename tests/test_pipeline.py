"""End to end: every frame accounted for, order kept, outputs valid, clean shutdown."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import load_config
from gapstream.errors import OutputError, PipelineError
from gapstream.meta import load_meta

from .helpers import brightness_model, gapstream_children, make_video, shm_segments


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gapstream", *args], capture_output=True, text=True,
                          timeout=timeout)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_cli_run_accounts_for_every_frame(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=45, width=320, height=240, fps=15)
    r = cli("run", str(clip), "--model", str(tiny_model), "--out", str(tmp_path / "out.mp4"),
            "--json", str(tmp_path / "out.jsonl"), "--batch", "4")
    assert r.returncode == 0, r.stderr
    assert "45 frames" in r.stdout and "dropped 0" in r.stdout
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [rec["frame"] for rec in records] == list(range(45))
    for rec in records:
        assert 0.0 <= rec["person_prob"] <= 1.0 and isinstance(rec["boxes"], list)
        assert {"frame", "time", "person_prob", "person", "boxes", "latency_ms"} <= rec.keys()
    times = [rec["time"] for rec in records]
    assert times == sorted(times) and abs(times[1] - 1 / 15) < 1e-3
    assert count_frames(tmp_path / "out.mp4") == 45
    with av.open(str(tmp_path / "out.mp4")) as c:
        st = c.streams.video[0]
        assert st.average_rate == 15 and (st.width, st.height) == (320, 240)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_api_keeps_order_and_batching_does_not_change_results(
    tiny_model: Path, video: Path, batch: int
) -> None:
    cfg = load_config(None, {"infer.batch_size": batch, "output.stats_interval": 0})
    results = []
    for r in Pipeline(str(video), str(tiny_model), cfg).run():
        # The source encodes the frame index as the background gray level.
        results.append((r.index, int(np.median(r.frame[:, :, 0])), r.probs.copy()))
    assert [i for i, _, _ in results] == list(range(30))
    for i, gray, _ in results:
        assert abs(gray - (i * 8) % 256) <= 4
    ref_cfg = load_config(None, {"infer.batch_size": 1})
    reference = [r.probs.copy() for r in Pipeline(str(video), str(tiny_model), ref_cfg).run()]
    for (_, _, p), ref in zip(results, reference, strict=True):
        np.testing.assert_allclose(p, ref, atol=1e-5)


def test_result_fields(tiny_model: Path, video: Path) -> None:
    pipe = Pipeline(str(video), str(tiny_model))
    first = next(iter(pipe.run()))
    assert first.frame.shape == (120, 160, 3) and first.frame.dtype == np.uint8
    assert first.probs.shape == (2,) and abs(float(first.probs.sum()) - 1) < 1e-3
    assert first.cam.shape == (2, 2) and first.cam.min() >= 0 and first.cam.max() <= 1
    d = first.to_dict()
    assert d["frame"] == first.index == 0 and d["person"] == first.is_person
    assert d["person_prob"] == round(float(first.probs[1]), 4)
    assert len(d["boxes"]) == len(first.detections) and (first.is_person or not d["boxes"])


def test_breaking_out_early_cleans_up(tiny_model: Path) -> None:
    for r in Pipeline("synthetic://?width=320&height=240&frames=100000", str(tiny_model)).run():
        if r.index == 5:
            break
    assert not shm_segments()
    assert not gapstream_children()


def test_image_folder_and_synthetic_sources(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((90 + i, 120, 3), i * 30, np.uint8))
    got = [(r.index, r.frame.shape) for r in Pipeline(str(folder), str(tiny_model)).run()]
    assert [i for i, _ in got] == list(range(7))
    assert [s for _, s in got] == [(90 + i, 120, 3) for i in range(7)]  # sizes vary per image
    syn = list(Pipeline("synthetic://?width=64&height=48&frames=12", str(tiny_model)).run())
    assert [r.index for r in syn] == list(range(12))


def test_image_folder_of_mixed_aspect_runs_each_image_at_its_own(tmp_path: Path) -> None:
    """A keep-aspect model runs a landscape and a portrait image each at its own input size, with
    its boxes on its own bright object in its own pixels."""
    model = brightness_model(tmp_path / "model")
    meta = load_meta(model)
    folder = tmp_path / "imgs"
    folder.mkdir()
    # (width, height, the bright object x1, y1, x2, y2)
    specs = [(640, 360, (64, 144, 256, 336)), (240, 320, (48, 160, 160, 304)),
             (640, 360, (400, 32, 600, 200))]
    for i, (w, h, (x1, y1, x2, y2)) in enumerate(specs):
        img = np.full((h, w, 3), 150, np.uint8)
        img[y1:y2, x1:x2] = 255
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    results = list(Pipeline(str(folder), str(model), load_config(None, {"post.threshold": 0.9})).run())
    assert [r.index for r in results] == [0, 1, 2]
    for r, (w, h, (x1, y1, x2, y2)) in zip(results, specs):
        assert r.cam.shape == meta.maps_shape(meta.input_size_for(h, w))[:2]
        assert r.is_person and len(r.detections.xyxy)
        bx1, by1, bx2, by2 = r.detections.xyxy[0]
        cx, cy, cell = (bx1 + bx2) / 2, (by1 + by2) / 2, 16 * max(w, h) / max(meta.input_size_for(h, w))
        assert x1 - cell <= cx <= x2 + cell and y1 - cell <= cy <= y2 + cell, (r.index, r.detections.xyxy)
    assert results[0].cam.shape != results[1].cam.shape  # portrait is not squashed into landscape


def test_crashed_stage_stops_pipeline_with_clear_error(tiny_model: Path) -> None:
    pipe = Pipeline("synthetic://?width=320&height=240&frames=100000", str(tiny_model))
    with pytest.raises(PipelineError, match="gapstream-infer died unexpectedly"):
        for r in pipe.run():
            if r.index == 3:
                [p] = [p for p in gapstream_children() if p.name == "gapstream-infer"]
                os.kill(p.pid, signal.SIGKILL)
    assert not shm_segments()
    assert not gapstream_children()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_output_stays_valid(tiny_model: Path, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gapstream", "run", "synthetic://?width=320&height=240&live=1&fps=30",
         "--model", str(tiny_model), "--out", str(out), "--json", str(tmp_path / "o.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not (tmp_path / "o.jsonl").exists()
                                           or (tmp_path / "o.jsonl").stat().st_size == 0):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert count_frames(out) > 0  # the encoder was flushed and the file closed
    assert not shm_segments(proc.pid)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.strip()
    assert children == b""


def test_run_time_path_never_imports_tensorflow(tiny_model: Path, video: Path) -> None:
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from gapstream.cli import main\n"
            f"rc = main(['run', {str(video)!r}, '--model', {str(tiny_model)!r}, '--stats-interval', '0'])\n"
            "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "30 frames" in r.stdout


def test_pipeline_leaves_the_callers_config_alone(tiny_model: Path, video: Path) -> None:
    cfg = load_config(None, {"output.stats_interval": 0})
    before = copy.deepcopy(cfg)
    pipe = Pipeline(str(video), str(tiny_model), cfg)
    assert cfg == before
    assert pipe.config.source.uri == str(video) and pipe.config.model.path == str(tiny_model)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_sink_failure_is_an_output_error(tiny_model: Path, video: Path) -> None:
    cfg = load_config(None, {"output.json": "/dev/full", "output.stats_interval": 0})
    with pytest.raises(OutputError, match="/dev/full"):
        for _ in Pipeline(str(video), str(tiny_model), cfg).run():
            pass
