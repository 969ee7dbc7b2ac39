"""Events (hysteresis, JSON line, snapshots), zones and exclusion masks, on the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import EventsConfig, load_config
from gapstream.errors import ConfigError
from gapstream.events import Hysteresis
from gapstream.meta import ModelMeta, load_meta
from gapstream.zones import coverage, keep_weights, masked_probs, zone_scores

from .helpers import make_video


def run_events(cfg_scores: list[float], **kw: float) -> list[tuple[int, str]]:
    h = Hysteresis(EventsConfig(**kw))
    out = []
    for i, s in enumerate(cfg_scores):
        change = h.update(s, i * 0.1)  # 10 fps
        if change:
            out.append((i, change))
    return out


def test_hysteresis_needs_min_frames_and_holds() -> None:
    kw = {"on_threshold": 0.6, "off_threshold": 0.4, "min_frames": 3, "hold_time": 0.25}
    # Two frames above is not enough; three are.
    assert run_events([0.9, 0.9, 0.1, 0.9, 0.9, 0.9], **kw) == [(5, "start")]
    # Between the thresholds the state holds: no end while >= 0.4, however long.
    assert run_events([0.9] * 3 + [0.5] * 20, **kw) == [(2, "start")]
    # Below off_threshold for < hold_time, then back: one event; then a real end after 0.25 s.
    scores = [0.9] * 3 + [0.1, 0.1, 0.5] + [0.1] * 4
    assert run_events(scores, **kw) == [(2, "start"), (9, "end")]


def test_events_json_and_snapshots_from_the_pipeline(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=20, width=160, height=120)
    cfg = load_config(None, {
        "source.name": "door", "output.stats_interval": 0,
        "events.json": str(tmp_path / "events.jsonl"), "events.snapshots": str(tmp_path / "snaps"),
        "events.on_threshold": 0.0, "events.off_threshold": 0.0, "events.min_frames": 3,
    })
    results = [(r.person_prob, r.detections.to_list())
               for r in Pipeline(str(clip), str(tiny_model), cfg).run()]
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 1  # score 0 never falls below 0: one event, closed when the stream ends
    ev = json.loads(lines[0])
    assert ev["camera"] == "door" and ev["frames"] == 18  # from the third frame on
    assert ev["start"] <= ev["peak_time"] <= ev["end"]
    # The capture of the event's first frame (frame 0: the first of its min_frames), on the same clock.
    assert ev["start_capture"] <= ev["start"] < ev["start_capture"] + 10
    assert ev["peak_prob"] == pytest.approx(max(p for p, _ in results[2:]), abs=1e-4)
    assert 0 <= ev["peak_cam"][0] <= 1 and 0 <= ev["peak_cam"][1] <= 1
    assert abs(ev["start_pts"] - 2 / 15) < 0.2
    clean, overlay = cv2.imread(ev["snapshot"]), cv2.imread(ev["snapshot_cam"])
    assert clean.shape == overlay.shape == (120, 160, 3)
    assert Path(ev["snapshot"]).name == f"door-{ev['id']}.jpg"
    assert np.abs(clean.astype(int) - overlay.astype(int)).mean() > 5  # the heat-map is drawn on one


def test_events_limited_to_a_zone(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=12, width=160, height=120)
    base = {"output.stats_interval": 0, "events.json": str(tmp_path / "ev.jsonl"),
            "events.on_threshold": 0.001, "events.off_threshold": 0.001, "events.min_frames": 1,
            "source.zones": [{"name": "nowhere", "points": [[0, 0], [0.01, 0], [0.01, 0.01]]}],
            "events.zones": ["nowhere"], "source.masks": [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]}
    for _ in Pipeline(str(clip), str(tiny_model), load_config(None, base)).run():
        pass
    # The zone lies inside the exclusion mask, where the CAM is zero: its score is 0, no event.
    assert (tmp_path / "ev.jsonl").read_text() == ""


def test_mask_over_the_whole_frame_leaves_nobody(tiny_model: Path, video: Path) -> None:
    # Not the bias's prior: the shipped model's leans to person (0.501), which would flag every
    # fully masked frame.
    cfg = load_config(None, {"source.masks": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "post.score_threshold": 0.0})
    meta = load_meta(tiny_model)
    results = [r for r in Pipeline(str(video), str(tiny_model), cfg).run()]
    assert len(results) == 30
    for r in results:
        assert not r.is_person and r.probs[meta.person_index] == 0.0 and len(r.detections) == 0


def _meta(kernel: np.ndarray, bias: np.ndarray, pooling: str = "gap", **kw: object) -> ModelMeta:
    return ModelMeta(labels=["no_person", "person"], person_index=1, input_size=(64, 64), dense_kernel=kernel,
                     dense_bias=bias, pooling=pooling, **kw)  # type: ignore[arg-type]


def test_masked_probs_without_mask_is_plain_gap() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((4, 5, 8)).astype(np.float32)
    kernel, bias = rng.normal(size=(8, 2)).astype(np.float32), np.array([0.1, -0.2], np.float32)
    logits = maps.mean(axis=(0, 1)) @ kernel + bias
    ref = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(masked_probs(maps, _meta(kernel, bias), np.ones((4, 5))), ref, rtol=1e-5)
    assert keep_weights([], 4, 5) is None


def test_masked_probs_follow_topk_pooling() -> None:
    """A "topk" model (meta.pooling): the mean of the top 5 % cell scores, masked cells left out."""
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(10, 12, 8)).astype(np.float32)
    kernel, bias = rng.normal(size=(8, 2)).astype(np.float32), np.array([0.1, -0.2], np.float32)

    def ref(cells: np.ndarray) -> np.ndarray:
        top = -np.sort(-(cells.reshape(-1, 8) @ kernel), axis=0)[:6]  # 5 % of 120 cells
        logits = top.mean(axis=0) + bias
        return np.exp(logits) / np.exp(logits).sum()

    meta = _meta(kernel, bias, "topk")
    np.testing.assert_allclose(masked_probs(maps, meta, np.ones((10, 12))), ref(maps), rtol=1e-5)
    keep = np.ones((10, 12))
    keep[:, :6] = 0  # the left half masked
    np.testing.assert_allclose(masked_probs(maps, meta, keep), ref(maps[:, 6:]), rtol=1e-5)


def test_masked_probs_pool_the_trained_dense_layer_with_its_share() -> None:
    """A scene model's CAM kernel is a derived difference; its own dense layer and top-k share
    (``pool_kernel``, ``topk_share``) are what is pooled, per class."""
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(10, 12, 8)).astype(np.float32)
    kernel, bias = rng.normal(size=(8, 2)).astype(np.float32), np.array([0.3, -0.2], np.float32)
    cam_kernel = np.stack([np.zeros(8, np.float32), kernel[:, 1] - kernel[:, 0]], axis=1)
    meta = _meta(cam_kernel, np.array([0, -0.5], np.float32), "topk", pool_kernel=kernel, pool_bias=bias,
                 topk_share=0.1)
    top = -np.sort(-(maps.reshape(-1, 8) @ kernel), axis=0)[:12]  # 10 % of 120 cells, per class
    logits = top.mean(axis=0) + bias
    ref = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(masked_probs(maps, meta, np.ones((10, 12))), ref, rtol=1e-5)


def test_masked_probs_per_class_keep_pools_each_class_over_its_own_cells() -> None:
    """The motion gate's ``person`` mode: static cells leave the person class's top-k only."""
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(10, 12, 8)).astype(np.float32)
    kernel, bias = rng.normal(size=(8, 2)).astype(np.float32), np.array([0.1, -0.2], np.float32)
    keep = np.ones((10, 12, 2), np.float32)
    keep[:, :6, 1] = 0  # the person (class 1) keeps the right half; no person keeps every cell
    scores = maps.reshape(-1, 8) @ kernel
    right = maps[:, 6:].reshape(-1, 8) @ kernel
    logits = np.array([-np.sort(-scores[:, 0])[:6].mean(), -np.sort(-right[:, 1])[:6].mean()]) + bias
    ref = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(masked_probs(maps, _meta(kernel, bias, "topk"), keep), ref, rtol=1e-5)


def test_coverage_and_zone_scores() -> None:
    left = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    cov = coverage([left], 4, 4)
    np.testing.assert_allclose(cov[:, :2], 1.0)
    np.testing.assert_allclose(cov[:, 2:], 0.0)
    half = coverage([[[0, 0], [0.375, 0], [0.375, 1], [0, 1]]], 1, 4)  # 1.5 cells of 4
    np.testing.assert_allclose(half, [[1, 0.5, 0, 0]], atol=0.05)
    cam = np.zeros((4, 4), np.float32)
    cam[1, 0], cam[2, 3] = 1.0, 0.5
    scores = zone_scores(cam, 0.9, {"left": left, "right": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]})
    assert scores["left"] == pytest.approx(0.9 * 1 / 1.5)
    assert scores["right"] == pytest.approx(0.9 * 0.5 / 1.5)


@pytest.mark.parametrize("overrides, key", [
    ({"events.off_threshold": 0.9}, "events.off_threshold"),
    ({"events.zones": ["door"]}, "events.zones"),
    ({"source.zones": [{"name": "a", "points": [[0, 0], [1, 1]]}]}, "source.zones[0].points"),
    ({"source.masks": [[[0, 0], [2, 0], [0, 1]]]}, "source.masks[0]"),
    ({"source.name": "cam one"}, "source.name"),
])
def test_bad_event_and_zone_config(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key.replace('[', '.').replace(']', '.')}"):
        load_config(None, overrides)


def test_stride_and_max_fps_thin_the_source(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=30, fps=15)  # 2 s
    for overrides, expected in (({"source.stride": 3}, 10), ({"source.max_fps": 5.0}, 10),
                                ({"source.stride": 2, "source.max_fps": 5.0}, 10)):
        cfg = load_config(None, {"output.stats_interval": 0, **overrides})
        pipe = Pipeline(str(clip), str(tiny_model), cfg)
        got = [(r.index, r.pts, int(np.median(r.frame[:, :, 0]))) for r in pipe.run()]
        assert len(got) == expected, overrides
        assert [i for i, _, _ in got] == list(range(expected))
        for _, pts, gray in got:  # the frame is the one decoded at that time (gray level = index)
            assert abs(gray - (round(pts * 15) * 8) % 256) <= 4
        assert pipe.stats is not None and pipe.stats.dropped == 0
    with pytest.raises(ConfigError, match="source.stride"):
        load_config(None, {"source.stride": 0})
