"""CAM maths and boxes by the paper's rule."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gapstream.annotate import blend
from gapstream.cam import (
    boxes_from_cam,
    cam_batch,
    cam_peaks,
    localize,
    merge_shallow_splits,
    pool_probs,
    split_by_peaks,
    upsample,
)
from gapstream.config import PostConfig
from gapstream.gapmodel import GapModel
from gapstream.meta import load_meta, save_meta
from gapstream.metrics import iou


def test_cam_batch_is_the_weighted_sum_of_maps() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 7, 7, 16), dtype=np.float32)
    kernel = rng.standard_normal((16, 2)).astype(np.float32)
    classes = np.array([0, 1, 1])
    cams = cam_batch(maps, kernel, classes)
    for i, c in enumerate(classes):
        ref = sum(maps[i, :, :, k] * kernel[k, c] for k in range(16))  # the reference's loop
        ref = np.maximum(ref, 0)
        ref = ref / ref.max() if ref.max() > 0 else ref
        np.testing.assert_allclose(cams[i], ref, rtol=1e-4, atol=1e-5)
    assert cams.shape == (3, 7, 7) and cams.max() <= 1.0


def test_all_negative_cam_gives_no_boxes() -> None:
    maps = np.ones((1, 7, 7, 4), np.float32)
    kernel = -np.ones((4, 2), np.float32)
    cam = cam_batch(maps, kernel, np.array([1]))[0]
    assert cam.max() == 0
    assert len(boxes_from_cam(cam)) == 0


def test_one_box_per_connected_component() -> None:
    cam = np.zeros((100, 200), np.float32)
    cam[10:40, 20:50] = 1.0
    cam[60:90, 120:180] = 0.5
    det = boxes_from_cam(cam, threshold=0.2)
    assert len(det) == 2
    assert det.xyxy[0].tolist() == [20, 10, 50, 40]  # highest peak first
    assert det.xyxy[1].tolist() == [120, 60, 180, 90]
    np.testing.assert_allclose(det.scores, [1.0, 0.5])
    # A higher threshold removes the weaker component.
    assert len(boxes_from_cam(cam, threshold=0.6)) == 1
    # min_area drops small components.
    big_only = boxes_from_cam(cam, threshold=0.2, min_area=0.06)
    assert big_only.xyxy.tolist() == [[120, 60, 180, 90]]


def test_localize_scales_boxes_to_frame() -> None:
    cam = np.zeros((7, 7), np.float32)
    cam[2:5, 2:5] = 1.0
    cfg = PostConfig(threshold=0.2, box_resolution=448, score_threshold=0.5)
    person, det = localize(cam, np.array([0.1, 0.9]), 1, 1400, 700, cfg)
    assert person and len(det) == 1
    x1, y1, x2, y2 = det.xyxy[0]
    assert 0 < x1 < x2 < 1400 and 0 < y1 < y2 < 700
    center = ((x1 + x2) / 2, (y1 + y2) / 2)
    assert abs(center[0] - 700) < 60 and abs(center[1] - 350) < 30
    assert det.scores[0] == np.float32(0.9)


def test_localize_gates_on_the_decision() -> None:
    cam = np.ones((7, 7), np.float32)
    cfg = PostConfig(threshold=0.2, score_threshold=0.6)
    for probs in ([0.45, 0.55], [0.7, 0.3]):  # below the score threshold; another class predicted
        person, det = localize(cam, np.array(probs), 1, 64, 64, cfg)
        assert not person and len(det) == 0
    person, det = localize(cam, np.array([0.3, 0.7]), 1, 64, 64, cfg)
    assert person and det.xyxy.tolist() == [[0, 0, 64, 64]]


def test_iou() -> None:
    assert iou([[0, 0, 10, 10]], [[0, 0, 10, 10]])[0, 0] == 1.0
    assert iou([[0, 0, 10, 10]], [[10, 10, 20, 20]])[0, 0] == 0.0
    assert abs(iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] - 1 / 3) < 1e-9


def test_upsample_and_blend_in_place() -> None:
    cam = upsample(np.eye(7, dtype=np.float32), 64, 48)
    assert cam.shape == (48, 64) and cam.min() >= 0 and cam.max() <= 1
    frame = np.zeros((48, 64, 3), np.uint8)
    blend(frame, cam, 0.5)
    assert frame.any()


def _two_blobs(gap_value: float) -> np.ndarray:
    """A 16x28 CAM with two persons side by side joined by a saddle of ``gap_value``."""
    cam = np.zeros((16, 28), np.float32)
    yy, xx = np.mgrid[0:16, 0:28]
    for cx, peak in ((10, 1.0), (16, 0.9)):
        cam = np.maximum(cam, peak * np.exp(-((xx - cx) ** 2 / 16 + (yy - 8) ** 2 / 12)))
    cam[:, 13] = np.minimum(cam[:, 13], gap_value)
    return cam


def test_two_blobs_give_two_boxes_one_per_peak() -> None:
    cam = _two_blobs(0.3)  # a valley below split_saddle (0.5) of the lower peak (0.9)
    cfg = PostConfig(threshold=0.2, box_resolution=448, min_area=0.0, score_threshold=0.5)
    person, det = localize(cam, np.array([0.1, 0.9]), 1, 1280, 720, cfg)
    assert person and len(det) == 2
    left, right = sorted(det.xyxy.tolist())
    # The split lies at the saddle (cell 13 of 28 -> x = 13.5 / 28 * 1280 = 617 px).
    assert left[2] <= right[0] + 1 and abs(left[2] - 617) < 50
    assert left[0] < 10 / 28 * 1280 < left[2] and right[0] < 16 / 28 * 1280 < right[2]
    # Without the split the paper's rule merges the group into one box.
    _, merged = localize(cam, np.array([0.1, 0.9]), 1, 1280, 720, replace(cfg, split_peaks=False))
    assert len(merged) == 1 and merged.xyxy[0, 0] == left[0] and merged.xyxy[0, 2] == right[2]


def test_one_blob_stays_one_box_and_weak_peaks_do_not_split() -> None:
    cam = _two_blobs(0.5)
    cfg = PostConfig(threshold=0.2, min_area=0.0, score_threshold=0.5)
    one = np.exp(-((np.mgrid[0:16, 0:28][1] - 14) ** 2 / 8 + (np.mgrid[0:16, 0:28][0] - 8) ** 2 / 12))
    assert len(cam_peaks(one.astype(np.float32), 0.5)) == 1
    assert len(localize(one.astype(np.float32), np.array([0.1, 0.9]), 1, 448, 256, cfg)[1]) == 1
    # A second peak below peak_floor does not make a second box.
    assert len(localize(cam, np.array([0.1, 0.9]), 1, 448, 256, replace(cfg, peak_floor=0.95))[1]) == 1


def test_split_by_peaks_labels_every_cell_from_the_nearest_basin() -> None:
    cam = _two_blobs(0.3)
    labels = split_by_peaks(cam, cam_peaks(cam, 0.5))
    assert set(np.unique(labels)) == {1, 2}
    assert labels[8, 5] != labels[8, 20] and labels[8, 10] == labels[8, 5] and labels[8, 16] == labels[8, 20]


def test_box_scale_resizes_about_the_centre_and_clips() -> None:
    cam = np.zeros((16, 28), np.float32)
    cam[6:10, 12:16] = 1.0
    base = PostConfig(threshold=0.5, box_resolution=448, split_peaks=False, score_threshold=0.5)
    _, det = localize(cam, np.array([0.1, 0.9]), 1, 448, 256, base)
    _, tall = localize(cam, np.array([0.1, 0.9]), 1, 448, 256, replace(base, box_scale=[1.0, 2.0]))
    (x1, y1, x2, y2), (tx1, ty1, tx2, ty2) = det.xyxy[0], tall.xyxy[0]
    assert (tx1, tx2) == (x1, x2) and abs((ty2 - ty1) - 2 * (y2 - y1)) < 1e-3
    assert abs((ty1 + ty2) / 2 - (y1 + y2) / 2) < 1e-3  # same centre
    _, huge = localize(cam, np.array([0.1, 0.9]), 1, 448, 256, replace(base, box_scale=[10.0, 10.0]))
    assert huge.xyxy[0].tolist() == [0, 0, 448, 256]  # clipped to the frame


def test_pool_probs_gap_is_gap_then_dense_and_topk_pools_each_class() -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    kernel, bias = rng.normal(size=(6, 2)).astype(np.float32), np.array([0.2, -0.1], np.float32)
    logits = maps.mean(axis=(1, 2)) @ kernel + bias
    ref = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pool_probs(maps, kernel, bias), ref, rtol=1e-5)
    scores = maps.reshape(3, 20, 6) @ kernel
    top = -np.sort(-scores, axis=1)[:, :2].mean(axis=1) + bias  # 10 % of 20 cells
    ref = np.exp(top) / np.exp(top).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pool_probs(maps, kernel, bias, "topk", 0.1), ref, rtol=1e-5)


def test_model_pools_its_maps_when_the_metadata_carries_the_trained_dense_layer(tiny_model: Path,
                                                                                tmp_path: Path) -> None:
    """With ``pool_kernel`` in the sidecar the probabilities come from the dequantised maps by
    the model's pooling, not from the graph's own output."""
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), np.uint8)
    graph_probs, maps = GapModel(tiny_model).predict(frames)
    path = tmp_path / tiny_model.name
    shutil.copy(tiny_model, path)
    meta = load_meta(tiny_model)
    kernel = np.random.default_rng(1).normal(size=meta.dense_kernel.shape).astype(np.float32)
    bias = np.array([0.5, -0.5], np.float32)
    meta.pool_kernel, meta.pool_bias, meta.pooling, meta.topk_share = kernel, bias, "topk", 0.25
    save_meta(meta, path)
    loaded = load_meta(path)
    np.testing.assert_array_equal(loaded.pool_kernel, kernel)
    assert loaded.topk_share == 0.25
    probs, maps2 = GapModel(path).predict(frames)
    np.testing.assert_array_equal(maps2, maps)
    np.testing.assert_allclose(probs, pool_probs(maps, kernel, bias, "topk", 0.25), rtol=1e-6)
    assert not np.allclose(probs, graph_probs, atol=1e-3)


def _blob(cx: float, cy: float, peak: float, sx: float = 2.0, sy: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[0:16, 0:28]
    return (peak * np.exp(-((xx - cx) ** 2 / sx + (yy - cy) ** 2 / sy))).astype(np.float32)


def test_parts_of_one_peaks_region_that_do_not_touch_get_a_box_each() -> None:
    # Two seeded persons and a weaker third (below peak_floor, so no seed of its own): the flood
    # gives the third to a neighbour's region, and one box around both would fit neither.
    cam = np.maximum.reduce([_blob(5, 8, 1.0), _blob(14, 8, 0.9), _blob(24, 8, 0.45)])
    cfg = PostConfig(threshold=0.25, box_resolution=448, min_area=0.0, score_threshold=0.5, peak_floor=0.5)
    assert len(cam_peaks(cam, 0.5)) == 2
    _, det = localize(cam, np.array([0.1, 0.9]), 1, 448, 256, cfg)
    assert len(det) == 3
    centres = sorted(((det.xyxy[:, 0] + det.xyxy[:, 2]) / 2 / 16 - 0.5).tolist())  # in cells
    assert centres == pytest.approx([5, 14, 24], abs=0.5)
    assert all(x2 - x1 < 9 * 16 for x1, _, x2, _ in det.xyxy.tolist())  # no box spans two persons


def test_mass_score_ranks_a_whole_person_above_a_bright_small_part() -> None:
    cam = np.maximum(_blob(6, 8, 1.0, 0.5, 0.5), _blob(18, 8, 0.8, 6.0, 12.0))
    cfg = PostConfig(threshold=0.25, box_resolution=448, min_area=0.0, score_threshold=0.5, box_score="peak")
    _, by_peak = localize(cam, np.array([0.1, 0.9]), 1, 448, 256, cfg)
    _, by_mass = localize(cam, np.array([0.1, 0.9]), 1, 448, 256, replace(cfg, box_score="mass"))
    assert len(by_peak) == len(by_mass) == 2
    assert by_peak.xyxy[0, 0] < 10 * 16 < by_mass.xyxy[0, 0]  # the top box moves to the large blob
    assert by_mass.scores[0] == pytest.approx(0.9) and by_mass.scores[1] < by_mass.scores[0]


def test_a_shallow_dip_between_two_peaks_stays_one_box_and_a_valley_splits() -> None:
    # One tall person whose CAM has two bumps (head and legs) with a shallow dip between them...
    one = np.maximum(_blob(10, 5, 1.0, 3.0, 12.0), _blob(10, 9, 0.9, 3.0, 12.0))
    assert len(cam_peaks(one, 0.5)) == 2
    dip = float(one[7, 10])
    assert 0.7 * 0.9 < dip < 0.9  # shallow: above 0.7 of the lower peak
    cfg = PostConfig(threshold=0.25, box_resolution=448, min_area=0.0, score_threshold=0.5)
    p = np.array([0.1, 0.9])
    assert len(localize(one, p, 1, 448, 256, replace(cfg, split_saddle=1.0))[1]) == 2  # every peak splits
    assert len(localize(one, p, 1, 448, 256, replace(cfg, split_saddle=0.7))[1]) == 1
    assert len(localize(one, p, 1, 448, 256, cfg)[1]) == 1  # the default, 0.5
    # ...and two persons side by side with a valley between them stay two boxes.
    assert len(localize(_two_blobs(0.3), p, 1, 448, 256, cfg)[1]) == 2


def test_merge_shallow_splits_merges_the_lower_peak_into_the_higher_and_relabels() -> None:
    cam = np.maximum.reduce([_blob(4, 8, 1.0, 6.0), _blob(7, 8, 0.95, 6.0), _blob(22, 8, 0.8)])
    labels = split_by_peaks(cam, cam_peaks(cam, 0.5))
    assert labels.max() == 3
    merged = merge_shallow_splits(cam, labels, 0.7)
    assert sorted(np.unique(merged).tolist()) == [1, 2]
    assert merged[8, 4] == merged[8, 7] != merged[8, 22]
    assert np.array_equal(merge_shallow_splits(cam, labels, 1.0), labels)
