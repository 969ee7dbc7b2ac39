"""Person-erased twins: teacher boxes, covering persons, and their place in the scene set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gapstream.training.scenes import CANVAS, build_scene_set
from gapstream.training.teacher import boxes_from_rows
from gapstream.training.twins import CachedBoxer, TwinRule, make_twins

from .test_scenes import make_sources

RED = np.array([255, 0, 0], np.uint8)


def scene_with_person(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured grey canvas with one pure-red 'person', and its box (x0, y0, x1, y1, conf)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(60, 200, (*CANVAS, 3), dtype=np.uint8), (5, 5), 0)
    img[100:180, 200:230] = RED
    return img, np.array([[200, 100, 230, 180, 0.9]], np.float32)


def red(img: np.ndarray) -> np.ndarray:
    return (img == RED).all(axis=2)


def test_teacher_rows_become_pixel_boxes_after_suppression() -> None:
    rows = np.array([
        [0.5, 0.5, 0.2, 0.4, 0.9],  # a person
        [0.51, 0.5, 0.2, 0.4, 0.6],  # the same person again: suppressed
        [0.1, 0.2, 0.1, 0.2, 0.3],  # another, less sure
        [0.8, 0.8, 0.1, 0.1, 0.01],  # below min_conf
        [0.99, 0.5, 0.1, 0.2, 0.5],  # cut by the right edge
    ], np.float32)
    boxes = boxes_from_rows(rows, to_px=100.0, hw=(80, 100), min_conf=0.05)
    assert boxes.shape == (3, 5)
    assert np.allclose(boxes[:, 4], [0.9, 0.5, 0.3])  # best first
    assert np.allclose(boxes[0, :4], [40, 30, 60, 70])
    assert boxes[1, 2] == 100  # clipped to the frame
    assert boxes_from_rows(rows[3:4], 100.0, (80, 100)).shape == (0, 5)


def test_twins_cover_the_person_and_paste_as_much_in_both() -> None:
    img, boxes = scene_with_person()
    positive, negative = make_twins(img, boxes, np.random.default_rng(0))
    assert red(img).sum() == 80 * 30
    assert red(negative).sum() == 0  # the person is gone from the person-free twin
    assert red(positive).sum() == 80 * 30  # and untouched in the person twin
    changed_neg = (negative != img).any(axis=2).sum()
    changed_pos = (positive != img).any(axis=2).sum()
    # one patch of the grown box's size in each: a pasted patch tells nothing about the label
    assert changed_neg > 0 and abs(changed_pos - changed_neg) < 0.25 * changed_neg


def test_no_twins_when_the_persons_cannot_be_covered_safely() -> None:
    img, boxes = scene_with_person()
    rng = np.random.default_rng(0)
    unsure = boxes.copy()
    unsure[:, 4] = 0.2
    assert make_twins(img, unsure, rng) is None  # no confident person: it may be missed
    assert make_twins(img, np.zeros((0, 5), np.float32), rng) is None
    big = np.array([[0, 0, 400, 250, 0.9]], np.float32)
    assert make_twins(img, big, rng) is None  # the person is most of the scene
    crowd = np.array([[10 + 40 * i, 10, 30 + 40 * i, 40, 0.9] for i in range(9)], np.float32)
    assert make_twins(img, crowd, rng, TwinRule(max_boxes=8)) is None


def test_patches_never_come_from_the_margins_of_a_fitted_image() -> None:
    img, boxes = scene_with_person()
    img[:, :150] = (7, 7, 7)  # the uniform margin of a narrow photo fitted to the canvas
    for seed in range(10):
        _, negative = make_twins(img, boxes, np.random.default_rng(seed))
        assert not (negative[100:180, 200:230] == 7).all(axis=2).any()


def test_cached_boxer_runs_the_teacher_once_per_image(tmp_path: Path) -> None:
    calls = []

    def teacher(img: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.array([[1, 2, 3, 4, 0.5]], np.float32)

    img, _ = scene_with_person()
    boxer = CachedBoxer(teacher, tmp_path / "boxes.json")
    assert np.allclose(boxer(img), [[1, 2, 3, 4, 0.5]])
    boxer(img.copy())
    boxer.save()
    again = CachedBoxer(teacher, tmp_path / "boxes.json")
    assert np.allclose(again(img), [[1, 2, 3, 4, 0.5]])
    assert len(calls) == 1 and boxer.computed == 1 and again.computed == 0


def test_scene_set_adds_an_erased_twin_for_each_real_training_person_image(tmp_path: Path) -> None:
    src = make_sources(tmp_path)
    plain, plain_val = build_scene_set(src["clips"], None, None, src["external"], every_s=0.2)
    seen: list[np.ndarray] = []

    def boxer(img: np.ndarray) -> np.ndarray:
        seen.append(img)
        return np.array([[200, 100, 230, 180, 0.9]], np.float32)

    train, val = build_scene_set(src["clips"], None, None, src["external"], every_s=0.2, boxer=boxer)
    counts, base = train.counts(), plain.counts()
    persons = base["clips"][1] + base["cam"][1]
    assert len(seen) == persons > 0  # only real training images with persons are boxed
    # each photo gives one person-free twin; the clip stand-ins are uniform frames, which have no
    # background to cover a person with, so they are left as they are
    assert counts["erased"] == [base["cam"][1], 0]
    assert counts["clips"] == base["clips"] and counts["cam"] == base["cam"]  # its person twin replaces it
    assert np.array_equal(val.x, plain_val.x)  # validation images are left as they are
    # every other image is the same with or without twins (the twins draw from their own stream)
    erased = train.source == "erased"
    others = ~erased & (train.y == 0)
    assert np.array_equal(train.x[others], plain.x[plain.y == 0])


def test_train_with_a_missing_teacher_is_one_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .test_bad_input import assert_one_clear_error

    src = make_sources(tmp_path)
    r = subprocess.run([sys.executable, "-m", "gapstream", "train", "--clips", str(src["clips"]),
                        "--weights", "none", "--erase-twins", str(tmp_path / "nope.tflite"),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert_one_clear_error(r, "--erase-twins", "nope.tflite")
    assert not (tmp_path / "run").exists()
