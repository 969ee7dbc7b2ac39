"""Motion gate: only cells that moved lately may make a person (unit and real pipeline)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import MotionConfig, load_config
from gapstream.errors import ConfigError
from gapstream.motion import MotionGate, peak_moved
from gapstream.post import no_person

from .helpers import brightness_model, make_video_frames

GRID = (6, 8)  # (h, w) cells; frames of 96x128 px are 16 px a cell


def frame_with_square(x: int, y: int = 40) -> np.ndarray:
    img = np.full((96, 128, 3), 60, np.uint8)
    img[y : y + 16, x : x + 16] = 230
    return img


def test_static_scene_closes_every_cell_after_warmup() -> None:
    gate = MotionGate(MotionConfig(enabled=True, warmup_frames=3))
    keeps = [gate.keep(frame_with_square(50), i / 10, *GRID) for i in range(10)]
    assert all(k is None for k in keeps[:3])  # the background is still forming
    assert all(k is not None and not k.any() for k in keeps[3:])  # nothing moved


def test_moving_object_opens_its_cells_and_they_close_after_hold() -> None:
    cfg = MotionConfig(enabled=True, warmup_frames=2, hold_s=1.0, dilate=False)
    gate = MotionGate(cfg)
    for i in range(3):
        gate.keep(frame_with_square(0), i / 10, *GRID)
    keep = gate.keep(frame_with_square(64), 0.3, *GRID)  # the square jumps to cells x 4, y 2-3
    assert keep is not None
    open_cells = set(zip(*np.nonzero(keep)))
    assert (2, 4) in open_cells and (2, 0) in open_cells  # where it is, and where it left
    assert all(c in {(2, 0), (3, 0), (2, 4), (3, 4), (2, 1), (3, 1), (2, 5), (3, 5)} for c in open_cells)
    # It stays put: the cells stay open for hold_s, then close as the background learns it.
    t, last = 0.4, keep
    while t < 20:  # the background takes it in after about 100 frames at alpha 0.02
        last = gate.keep(frame_with_square(64), t, *GRID)
        if t < 1.25:
            assert last is not None and last[2, 4] == 1.0
        t += 0.1
    assert last is not None and not last.any()


def test_dilation_opens_the_neighbours() -> None:
    gate = MotionGate(MotionConfig(enabled=True, warmup_frames=0))
    gate.keep(frame_with_square(64), 0.0, *GRID)
    keep = gate.keep(frame_with_square(64, y=8), 0.1, *GRID)
    assert keep is not None and keep[0:3, 3:6].all() and keep[5, 0] == 0


def test_motion_gate_is_on_by_default_and_checked() -> None:
    motion = load_config(None).motion
    assert motion.enabled and motion.gate == "person" and motion.hold_s == 30.0
    with pytest.raises(ConfigError, match="motion.threshold"):
        load_config(None, {"motion.threshold": 300})
    with pytest.raises(ConfigError, match="motion.hold_s"):
        load_config(None, {"motion.hold_s": -1})
    with pytest.raises(ConfigError, match="motion.gate"):
        load_config(None, {"motion.gate": "sometimes"})


def test_decision_gate_needs_the_cam_peak_in_an_open_cell() -> None:
    cam = np.zeros((4, 6), np.float32)
    cam[1, 1], cam[3, 5] = 1.0, 0.4
    moved = np.zeros((4, 6), np.float32)
    moved[3, 5] = 1.0  # only a weak part of the evidence moves
    assert not peak_moved(cam, moved)
    moved[1, 1] = 1.0
    assert peak_moved(cam, moved)
    probs = no_person(np.array([0.2, 0.8], np.float32), person_index=1)
    assert probs.tolist() == [1.0, 0.0]


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return brightness_model(tmp_path_factory.mktemp("bright"))


def run(model: Path, video: Path, **over: object) -> list[tuple[bool, int]]:
    """(person?, number of boxes) per frame, without the gate unless ``over`` turns it on, and
    frame by frame (no score history); a Result's frame is only valid until the next one."""
    cfg = load_config(None, {"post.score_threshold": 0.0, "motion.warmup_frames": 5, "motion.enabled": False,
                             "post.smooth_window_s": 0, **over})
    return [(r.is_person, len(r.detections)) for r in Pipeline(str(video), str(model), cfg).run()]


@pytest.mark.parametrize("gate", ["decision", "person", "pooling"])
def test_pipeline_flags_no_frame_of_a_still_scene_once_the_gate_is_up(bright: Path, tmp_path: Path,
                                                                      gate: str) -> None:
    # A bright scene is a "person" for the brightness model in every frame; nothing in it moves.
    still = make_video_frames(tmp_path / "still.mp4", [np.full((90, 160, 3), 200, np.uint8)] * 30, 10)
    plain, gated = run(bright, still), run(bright, still, **{"motion.enabled": True, "motion.gate": gate})
    assert len(gated) == 30 and all(p for p, _ in plain)
    assert gated[:5] == plain[:5]  # warm-up: no gate
    assert gated[5:] == [(False, 0)] * 25


def test_pipeline_keeps_persons_where_the_picture_moves(bright: Path, tmp_path: Path) -> None:
    # The whole picture changes every frame (a flickering bright scene): every cell stays open.
    frames = [np.full((90, 160, 3), 170 if i % 2 else 250, np.uint8) for i in range(30)]
    flicker = make_video_frames(tmp_path / "flicker.mp4", frames, 10)
    plain = run(bright, flicker)
    assert len(plain) == 30 and all(p for p, _ in plain)
    for gate in ("pooling", "person"):
        assert run(bright, flicker, **{"motion.enabled": True, "motion.gate": gate}) == plain, gate


def test_image_folder_is_never_gated(bright: Path, tmp_path: Path) -> None:
    # Unrelated pictures are no video: repeated bright pictures would look static to the gate.
    folder = tmp_path / "stills"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((90, 160, 3), 200, np.uint8))
    got = run(bright, folder, **{"motion.enabled": True, "motion.warmup_frames": 0})
    assert got == run(bright, folder) and len(got) == 8 and all(p for p, _ in got)
