"""Temporal smoothing of the decision: a camera's median (or mean) person probability over
the last half second (unit and real pipeline)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import load_config
from gapstream.errors import ConfigError
from gapstream.smoothing import ScoreHistory, with_person_prob

from .helpers import brightness_model, make_video_frames


def test_median_over_the_window_then_forgets() -> None:
    h = ScoreHistory(0.5, "median")
    got = [h.update(i / 10, p) for i, p in enumerate([0.0, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0])]
    # 10 frames a second: the window holds the frames of (t - 0.5, t], five at most.
    assert got == [0.0, 0.45, 0.0, 0.45, 0.9, 0.9, 0.9, 0.9, 0.0]


def test_mean_and_a_timestamp_that_goes_back_restarts() -> None:
    h = ScoreHistory(1.0, "mean")
    assert h.update(0.0, 0.2) == pytest.approx(0.2)
    assert h.update(0.5, 0.6) == pytest.approx(0.4)
    assert h.update(1.0, 1.0) == pytest.approx(0.8)  # 0.0 has left: (0.0, 1.0]
    assert h.update(0.1, 0.3) == pytest.approx(0.3)  # a new stream: nothing of the old one counts


def test_minimum_says_whether_a_score_stayed_up_for_the_window() -> None:
    h = ScoreHistory(0.3, "min")
    got = [h.update(i / 10, p) for i, p in enumerate([0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9])]
    # (t - 0.3, t]: three frames; a dip is remembered until it has left the window.
    assert got == [0.9, 0.9, 0.2, 0.2, 0.2, 0.9, 0.9]


def test_a_window_shorter_than_a_frame_is_the_frame_itself() -> None:
    h = ScoreHistory(1e-9, "median")
    assert [h.update(i / 10, p) for i, p in enumerate([0.2, 0.9, 0.4])] == [0.2, 0.9, 0.4]


def test_with_person_prob_shares_the_rest() -> None:
    assert with_person_prob(np.array([0.3, 0.7], np.float32), 1, 0.2).tolist() == pytest.approx([0.8, 0.2])
    three = with_person_prob(np.array([0.1, 0.3, 0.6], np.float32), 2, 0.2)
    assert three.tolist() == pytest.approx([0.2, 0.6, 0.2])
    assert with_person_prob(np.array([0.0, 1.0], np.float32), 1, 0.4).tolist() == pytest.approx([0.6, 0.4])


def test_smoothing_is_on_by_default_and_checked() -> None:
    post = load_config(None).post
    assert post.smooth_window_s == 0.5 and post.smooth == "median"
    with pytest.raises(ConfigError, match="post.smooth"):
        load_config(None, {"post.smooth": "mode"})
    with pytest.raises(ConfigError, match="post.smooth_window_s"):
        load_config(None, {"post.smooth_window_s": -0.1})


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return brightness_model(tmp_path_factory.mktemp("bright"))


DARK, LIGHT = np.full((90, 160, 3), 20, np.uint8), np.full((90, 160, 3), 230, np.uint8)


def flags(model: Path, source: Path, **over: object) -> list[bool]:
    cfg = load_config(None, {"motion.enabled": False, **over})
    return [r.is_person for r in Pipeline(str(source), str(model), cfg).run()]


def test_pipeline_drops_a_lone_frame_and_keeps_a_lasting_one(bright: Path, tmp_path: Path) -> None:
    # 10 fps: dark, one bright frame, dark, then a bright second. The brightness model calls a
    # bright frame a person.
    frames = [DARK] * 10 + [LIGHT] + [DARK] * 9 + [LIGHT] * 10
    clip = make_video_frames(tmp_path / "blink.mp4", frames, 10)
    plain = flags(bright, clip, **{"post.smooth_window_s": 0})
    assert plain == [False] * 10 + [True] + [False] * 9 + [True] * 10
    smoothed = flags(bright, clip)  # the default: median over 0.5 s, five frames here
    assert smoothed == [False] * 22 + [True] * 8  # no lone frame; a lasting one from its 3rd on
    mean = flags(bright, clip, **{"post.smooth": "mean", "post.smooth_window_s": 0.3})
    assert mean == [False] * 10 + [False] + [False] * 9 + [False, True] + [True] * 8


def test_image_folder_frames_are_judged_alone(bright: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stills"
    folder.mkdir()
    pictures = [LIGHT, DARK, DARK, LIGHT, DARK, LIGHT, LIGHT, LIGHT]
    for i, img in enumerate(pictures):
        cv2.imwrite(str(folder / f"{i:02d}.png"), img)
    # Unrelated pictures are no video: no score history across them (the default is on).
    got = flags(bright, folder)
    assert got == [bool(img.mean() > 128) for img in pictures]
