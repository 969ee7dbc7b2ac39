"""CAM maths and boxes by the paper's rule."""

from __future__ import annotations

import numpy as np

from gapstream.annotate import blend
from gapstream.cam import boxes_from_cam, cam_batch, localize, upsample
from gapstream.config import PostConfig
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
    cfg = PostConfig(threshold=0.2, box_resolution=448)
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
