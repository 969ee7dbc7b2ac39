"""Teacher pseudo-labels for unlabelled footage, and how training reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gapstream.training.clips import load_clips
from gapstream.training.scenes import build_scene_set
from gapstream.training.teacher import (
    TeacherRule,
    YoloTeacher,
    segments_from_scores,
    source_of,
    split_of,
    videos_in,
)

from .helpers import make_video_frames

RULE = TeacherRule(person_at=0.5, empty_below=0.25, step_s=0.5)


def test_video_with_people_keeps_only_confident_person_samples() -> None:
    scores = [(0.0, 0.9), (0.5, 0.8), (1.0, 0.05), (1.5, 0.3), (2.0, 0.7)]
    segs = segments_from_scores(scores, RULE, person_free=False)
    # low scores are not "no person": the teacher misses cut-off and tiny persons
    assert segs == [{"start": 0.0, "end": 0.75, "person": True},
                    {"start": 1.75, "end": 2.25, "person": True}]


def test_checked_person_free_video_leaves_out_person_like_samples() -> None:
    scores = [(0.0, 0.01), (0.5, 0.1), (1.0, 0.6), (1.5, 0.2)]
    segs = segments_from_scores(scores, RULE, person_free=True)
    assert segs == [{"start": 0.0, "end": 0.75, "person": False},
                    {"start": 1.25, "end": 1.75, "person": False}]


def test_sources_are_held_out_whole(tmp_path: Path) -> None:
    names = [f"src{i}__clip{j}.mp4" for i in range(40) for j in range(3)]
    splits: dict[str, set[str]] = {}
    for n in names:
        splits.setdefault(source_of(Path(n)), set()).add(split_of(source_of(Path(n))))
    assert all(len(s) == 1 for s in splits.values())  # never split inside a source
    held = sum(s == {"val"} for s in splits.values())
    assert 3 <= held <= 20  # about a quarter of 40
    (tmp_path / "noperson").mkdir()
    for n in ("a__x.mp4", "noperson/b__y.avi", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in videos_in(tmp_path)]
    assert found == ["a__x.mp4", "noperson/b__y.avi"]


def test_footage_val_sources_are_validation_only(tmp_path: Path) -> None:
    root = tmp_path / "footage"
    make_video_frames(root / "cam__a.mp4", [np.full((90, 160, 3), 200, np.uint8)] * 20, 10)
    make_video_frames(root / "noperson" / "yard__b.mp4", [np.full((90, 160, 3), 40, np.uint8)] * 20, 10)
    make_video_frames(root / "other__c.mp4", [np.full((90, 160, 3), 120, np.uint8)] * 20, 10)
    (root / "labels.json").write_text(json.dumps({"clips": [
        {"file": "cam__a.mp4", "split": "train", "segments": [{"start": 0, "end": 2.0, "person": True}]},
        {"file": "noperson/yard__b.mp4", "split": "train",
         "segments": [{"start": 0, "end": 0.75, "person": False},
                      {"start": 1.25, "end": 2.0, "person": False}]},
        {"file": "other__c.mp4", "split": "val", "segments": [{"start": 0, "end": 2.0, "person": True}]},
    ]}))
    assert [c.name for c in load_clips(root, "val")] == [f"{root.name}/other__c.mp4"]
    train, val = build_scene_set(None, None, None, None, footage=root)
    assert set(train.source) == {"footage"} and set(val.source) == {"footage"}
    # the held-out source's frames (mean 120) are all in val, none in train
    assert np.all(np.abs(val.x.reshape(len(val.y), -1).mean(1) - 120) < 20)
    assert not np.any(np.abs(train.x.reshape(len(train.y), -1).mean(1) - 120) < 10)
    assert set(train.y.tolist()) == {0, 1} and set(val.y.tolist()) == {1}
    # Several footage folders: each one's val sources stay validation.
    other = tmp_path / "more"
    make_video_frames(other / "noperson" / "sky__d.mp4", [np.full((90, 160, 3), 250, np.uint8)] * 20, 10)
    (other / "labels.json").write_text(json.dumps({"clips": [
        {"file": "noperson/sky__d.mp4", "split": "val",
         "segments": [{"start": 0, "end": 2.0, "person": False}]}]}))
    train2, val2 = build_scene_set(None, None, None, None, footage=[root, other])
    assert len(train2.y) == len(train.y) and len(val2.y) > len(val.y)
    assert set(val2.y.tolist()) == {0, 1}


class _FakeDetector:
    """A stand-in for the YOLOv8 interpreter: one fixed (1, 84, A) output."""

    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        assert value.shape == (1, 64, 64, 3)

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        return self.out


def test_teacher_boxes_of_chosen_classes() -> None:
    """Person boxes read class 0 only; class_boxes the best of the classes asked for."""
    out = np.zeros((1, 84, 3), np.float32)
    out[0, :4, 0] = [0.25, 0.25, 0.2, 0.4]  # a person at the top left (letterbox units)
    out[0, 4, 0] = 0.9
    out[0, :4, 1] = [0.75, 0.5, 0.3, 0.2]  # a cat (COCO 15) at the right
    out[0, 4 + 15, 1] = 0.8
    out[0, :4, 2] = [0.5, 0.8, 0.1, 0.1]  # a dog (16), weak
    out[0, 4 + 16, 2] = 0.2
    teacher = YoloTeacher.__new__(YoloTeacher)
    teacher._it, teacher._inp, teacher._out, teacher.size = _FakeDetector(out), {"index": 0}, {"index": 1}, 64
    frame = np.zeros((100, 100, 3), np.uint8)  # letterbox units x 100 px
    (person,) = teacher.person_boxes(frame, 0.5)
    np.testing.assert_allclose(person, [15, 5, 35, 45, 0.9], atol=1e-4)
    (cat,) = teacher.class_boxes(frame, (15, 16), 0.5)
    np.testing.assert_allclose(cat, [60, 40, 90, 60, 0.8], atol=1e-4)
    assert len(teacher.class_boxes(frame, (15, 16), 0.1)) == 2
    assert teacher.person_score(frame) == pytest.approx(0.9)
