"""benchmarks/zoom_crops.py's negatives (--animals, --vehicles, --peaks) with a stand-in for the YOLOv8n
teacher, which tests may not load (it lives in data/), and the static look's crop geometry."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from gapstream.paths import ROOT
from gapstream.zoom import crop_box, peak_regions

sys.path.insert(0, str(ROOT / "benchmarks"))
from zoom_crops import (  # noqa: E402
    ANIMALS,
    CROP_SIDE,
    VEHICLES,
    NegativeWriter,
    box_crops,
    object_crops,
    photo_group,
    photo_object_crops,
)


class StandInTeacher:
    """Boxes per COCO class, and a person score that is high for a crop with red in it (a person)."""

    def __init__(self, boxes: dict[int, list[tuple[float, float, float, float, float]]]) -> None:
        self.boxes = boxes
        self.asked: list[tuple[int, ...]] = []

    def class_boxes(self, rgb: np.ndarray, classes: tuple[int, ...], threshold: float) -> np.ndarray:
        self.asked.append(classes)
        rows = [b for c in classes for b in self.boxes.get(c, []) if b[4] >= threshold]
        return np.array(rows, np.float32).reshape(-1, 5)

    def person_score(self, rgb: np.ndarray) -> float:
        return 0.9 if (rgb[..., 0] > 200).any() and (rgb[..., 1] < 50).any() else 0.0


def scene() -> np.ndarray:
    """A grey 640x360 RGB frame with a red "person" at the right edge."""
    img = np.full((360, 640, 3), 128, np.uint8)
    img[150:250, 600:630] = (255, 0, 0)
    return img


def test_box_crops_take_the_two_largest_boxes_at_the_zooms_size() -> None:
    boxes = np.array([[10, 10, 30, 30, 0.9], [100, 100, 200, 220, 0.5], [300, 50, 360, 200, 0.8]], np.float32)
    crops = box_crops(scene(), boxes, 3.0)
    assert len(crops) == 2 and all(c.shape == (CROP_SIDE, CROP_SIDE, 3) for c in crops)
    assert box_crops(scene(), np.zeros((0, 5), np.float32), 3.0) == []


def test_object_crops_drop_a_crop_with_a_teacher_person_and_weak_boxes() -> None:
    teacher = StandInTeacher({
        16: [(40, 100, 140, 180, 0.8)],  # a dog far from the person: kept
        17: [(560, 150, 620, 250, 0.7)],  # a cat beside the person: its crop shows the person, dropped
        19: [(200, 100, 300, 180, 0.2)],  # a cow below the teacher's 0.3: not asked for
    })
    crops = object_crops(scene(), teacher, 3.0)
    assert len(crops) == 1 and not (crops[0][..., 0] > 200).any()
    assert teacher.asked == [ANIMALS]
    cars = StandInTeacher({2: [(40, 100, 140, 180, 0.8)], 16: [(200, 100, 300, 180, 0.9)]})
    assert len(object_crops(scene(), cars, 3.0, VEHICLES)) == 1 and cars.asked == [VEHICLES]


class StandInModel:
    """A crop model that calls a crop a person when its mean is bright."""

    meta = SimpleNamespace(person_index=1)

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, None]:
        p = float(batch.mean() > 150)
        return np.array([[1.0 - p, p]], np.float32), None


@pytest.mark.parametrize("hard", [False, True])
def test_the_writer_writes_negatives_and_twice_the_ones_the_model_calls_persons(tmp_path: Path,
                                                                                 hard: bool) -> None:
    writer = NegativeWriter(tmp_path, StandInModel() if hard else None)
    dark, bright = (np.full((CROP_SIDE, CROP_SIDE, 3), v, np.uint8) for v in (40, 220))
    writer.write("cows", "00006", [dark, bright])
    names = sorted(p.name for p in (tmp_path / "neg" / "cows").iterdir())
    assert names == ["00006_0.jpg", "00006_1.jpg"] + (["00006_1_h.jpg"] if hard else [])
    assert writer.counts == {"neg": len(names), "hard": int(hard)}
    assert not (tmp_path / "pos").exists()  # negatives only


def test_photo_crops_come_from_every_readable_photo_of_a_folder(tmp_path: Path) -> None:
    photos = tmp_path / "photos" / "highway"
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / "a.jpg"), cv2.cvtColor(scene(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "b.png"), cv2.cvtColor(scene(), cv2.COLOR_RGB2BGR))
    (photos / "broken.jpg").write_bytes(b"not an image")
    (photos / "notes.txt").write_text("skipped")
    writer = NegativeWriter(tmp_path / "out", None)
    teacher = StandInTeacher({7: [(40, 100, 140, 180, 0.8)]})
    photo_object_crops(photos, lambda img: object_crops(img, teacher, 3.0, VEHICLES), writer)
    assert sorted(p.name for p in (tmp_path / "out" / "neg" / "highway").iterdir()) == ["a_0.jpg", "b_0.jpg"]
    assert writer.counts["neg"] == 2


def test_peak_regions_centre_crops_on_the_highest_cells_and_skip_their_neighbours() -> None:
    scores = np.zeros((9, 16), np.float32)
    scores[2, 3], scores[2, 4], scores[7, 14] = 5.0, 4.0, 3.0  # (2, 4) lies inside the first crop
    boxes = peak_regions(scores, 640, 360, 120, 2)
    assert boxes[0] == (80, 40, 200, 160)  # cell (2, 3): centre (140, 100)
    assert boxes[1] == (520, 240, 640, 360)  # cell (7, 14): centre (580, 300), kept inside the frame
    assert all(x1 - x0 == y1 - y0 == 120 for x0, y0, x1, y1 in boxes)
    assert len(peak_regions(scores, 640, 360, 120, 1)) == 1


def test_static_and_motion_crops_round_alike() -> None:
    # A 7x7 grid over a 100x100 frame puts cell centres on fractional pixels (cell (3, 3): 50.0,
    # cell (0, 0): 7.14...); a motion blob with the same centre and side gives the same square.
    scores = np.zeros((7, 7), np.float32)
    scores[1, 2] = 1.0  # centre (35.71, 21.43)
    (box,) = peak_regions(scores, 100, 100, 33, 1)
    x, y = 2.5 * 100 / 7, 1.5 * 100 / 7
    assert box == crop_box((x - 8.25, y - 8.25, x + 8.25, y + 8.25), 1.0, 100, 100, 100 / 33)
    assert box == (19, 5, 52, 38)  # round(19.21), round(4.93): truncation would give (19, 4)


def test_photo_groups_name_their_source_not_just_the_label() -> None:
    assert photo_group(Path("../shared/data/INRIAPerson/Train/neg")) == "Train__neg"
    assert photo_group(Path("data/vehicle_photos/highway_tidar")) == "highway_tidar"
