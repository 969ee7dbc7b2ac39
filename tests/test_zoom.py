"""Motion-region zoom: crops around what moves, through a crop model (unit and real pipeline)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import MotionConfig, PostConfig, ZoomConfig, load_config
from gapstream.errors import ConfigError, ModelError
from gapstream.meta import ModelMeta, load_meta, save_meta
from gapstream.paths import DEFAULT_ZOOM_MODEL, ROOT, shipped_model
from gapstream.pipeline import needs_full_frames, zoom_on
from gapstream.post import analyse, zoomed
from gapstream.zoom import Regions, ZoomLook, crop_box, crop_detections, frame_cam, moving_blobs

from .helpers import brightness_model, make_grey_clips, make_video_frames
from .test_bad_input import assert_one_clear_error, run_cli

BG, SQUARE = 120, 32  # grey background; side of the white square that jumps about


def test_blobs_largest_first_and_crop_geometry() -> None:
    mask = np.zeros((90, 160), np.uint8)
    mask[10:20, 10:20] = 1  # 100 px
    mask[50:80, 100:120] = 1  # 600 px
    mask[5:6, 150:151] = 1  # one pixel: sensor noise, opened away
    blobs = moving_blobs(mask, k=2, min_area=6)
    assert len(blobs) == 2
    (x0, y0, x1, y1), second = blobs
    assert x0 <= 100 and y0 <= 50 and x1 >= 120 and y1 >= 80  # the larger one first (dilated)
    assert second[0] <= 10 and second[2] >= 20
    assert moving_blobs(mask, k=1, min_area=6) == blobs[:1]
    # Twice the longer side, square, shifted inside the frame; at least H / min_side; at most H.
    assert crop_box((10, 10, 30, 20), 1.0, 640, 360, 3.0) == (0, 0, 120, 120)
    assert crop_box((300, 100, 340, 200), 1.0, 640, 360, 3.0) == (220, 50, 420, 250)
    assert crop_box((300, 100, 340, 200), 2.0, 640, 360, 3.0) == (280, 0, 640, 360)  # capped, shifted
    assert crop_box((300, 170, 310, 180), 1.0, 640, 360, 100.0) == (295, 165, 315, 185)


def frame_with_square(x: int, y: int) -> np.ndarray:
    """The grey scene with the square at (x, y); x < 0: the empty scene."""
    img = np.full((180, 320, 3), BG, np.uint8)
    if x >= 0:
        img[y : y + SQUARE, x : x + SQUARE] = 255
    return img


def positions(n: int, seed: int = 0, empty: int = 3) -> list[tuple[int, int]]:
    """The square's places: none for ``empty`` frames (the background forms on the empty scene),
    then a new random place in each frame."""
    rng = np.random.default_rng(seed)
    spots = [(int(rng.integers(10, 320 - SQUARE - 10)), int(rng.integers(10, 180 - SQUARE - 10)))
             for _ in range(n - empty)]
    return [(-1, -1)] * empty + spots


def test_regions_warm_up_then_follow_what_moves() -> None:
    regions = Regions(ZoomConfig(min_side=100.0), MotionConfig(warmup_frames=3))
    spots = positions(8)
    found = [regions.find(frame_with_square(x, y)) for x, y in spots]
    assert found[:3] == [[], [], []]  # the background is still forming
    for (x, y), boxes in zip(spots[3:], found[3:]):
        assert boxes, (x, y)
        x0, y0, x1, y1 = boxes[0]  # the square's new place moved most
        assert x0 <= x and y0 <= y and x1 >= x + SQUARE and y1 >= y + SQUARE
        assert x1 - x0 == y1 - y0 <= 3 * SQUARE  # square, about twice the dilated blob
    # A new frame size (a stream back at another resolution): the background and its warm-up restart.
    bigger = [np.pad(frame_with_square(x, y), ((0, 20), (0, 0), (0, 0)), constant_values=BG)
              for x, y in spots[3:]]
    assert [regions.find(f) for f in bigger[:3]] == [[], [], []]  # the square moves meanwhile
    assert regions.find(bigger[3])
    still = Regions(ZoomConfig(), MotionConfig(warmup_frames=0))
    assert [still.find(frame_with_square(50, 50)) for _ in range(5)][1:] == [[]] * 4


META = ModelMeta(labels=["no_person", "person"], person_index=1, input_size=(64, 64),
                 dense_kernel=np.array([[-1.0, 1.0]], np.float32), dense_bias=np.zeros(2, np.float32))
POST = PostConfig(threshold=0.5, score_threshold=0.5, box_scale=[1.0, 1.0], min_area=0.0)


def look_at(region: tuple[int, int, int, int], prob: float) -> ZoomLook:
    cam = np.zeros((4, 4), np.float32)
    cam[1:3, 1:3] = 1.0  # the middle half of the crop
    return ZoomLook(np.array([region], np.int32), np.array([prob], np.float32), cam[None])


def test_crop_boxes_are_in_frame_pixels() -> None:
    persons, det = crop_detections(look_at((100, 40, 180, 120), 0.9), POST)
    assert persons == [True] and len(det) == 1
    x0, y0, x1, y1 = det.xyxy[0]
    assert 110 <= x0 <= 130 and 50 <= y0 <= 70 and 150 <= x1 <= 170 and 90 <= y1 <= 110
    persons, det = crop_detections(look_at((100, 40, 180, 120), 0.3), POST)
    assert persons == [False] and not len(det)  # not a person crop


def test_the_larger_probability_decides() -> None:
    maps = np.ones((4, 4, 1), np.float32)
    probs = np.array([0.8, 0.2], np.float32)
    assert zoomed(probs.copy(), maps, META, POST, 0.1, look_at((0, 0, 40, 40), 0.1), 80, 80) is None
    out = probs.copy()
    got = zoomed(out, maps, META, POST, 0.9, look_at((0, 0, 40, 40), 0.9), 80, 80)
    assert got is not None
    cls, cam, is_person, det = got
    assert cls == 1 and is_person and len(det) == 1 and out[1] == pytest.approx(0.9)
    # The frame's CAM is the person crop's, on the frame's 4x4 grid: the crop is its top-left 2x2.
    assert cam.shape == (4, 4) and cam.max() == pytest.approx(1.0) and cam[2:].max() == 0 == cam[:, 2:].max()
    # Higher than the frame's but under the decision threshold: no person, no boxes.
    out = probs.copy()
    got = zoomed(out, maps, META, POST, 0.4, look_at((0, 0, 40, 40), 0.4), 80, 80)
    assert got is not None and not got[2] and not len(got[3]) and out[1] == pytest.approx(0.4)


def test_zoom_box_scale_resizes_the_crops_boxes_only() -> None:
    maps = np.ones((4, 4, 1), np.float32)
    probs = np.array([0.8, 0.2], np.float32)
    look = look_at((0, 0, 40, 40), 0.9)
    _, _, _, plain = zoomed(probs.copy(), maps, META, replace(POST, zoom_box_scale=None), 0.9, look, 80, 80)
    narrow_cfg = replace(POST, zoom_box_scale=[0.5, 1.0])
    _, _, _, narrow = zoomed(probs.copy(), maps, META, narrow_cfg, 0.9, look, 80, 80)
    (x0, y0, x1, y1), (n0, m0, n1, m1) = plain.xyxy[0], narrow.xyxy[0]
    assert (m0, m1) == (y0, y1) and n1 - n0 == pytest.approx((x1 - x0) / 2)
    assert (n0 + n1) / 2 == pytest.approx((x0 + x1) / 2)
    # The whole frame's own boxes keep box_scale.
    frame_maps = np.zeros((4, 4, 1), np.float32)
    frame_maps[1:3, 1:3] = 1.0
    person = np.array([0.1, 0.9], np.float32)
    _, _, _, frame = analyse(person.copy(), frame_maps, META, POST, 80, 80)
    _, _, _, same = analyse(person.copy(), frame_maps, META, narrow_cfg, 80, 80)
    assert len(frame) == 1 and np.array_equal(frame.xyxy, same.xyxy)


def test_person_crops_cams_land_on_their_cells() -> None:
    """frame_cam: each person crop's CAM resized into the grid cells its region covers (a 160x80
    frame on an 8x16 grid: 10 px a cell), the larger where two overlap, peak 1; None without one."""
    look = ZoomLook(np.array([[40, 20, 80, 60], [100, 0, 160, 60]], np.int32),
                    np.array([0.9, 0.3], np.float32),
                    np.stack([np.full((4, 4), 0.5, np.float32), np.ones((4, 4), np.float32)]))
    cam = frame_cam(look, [True, False], (8, 16), 160, 80)
    assert cam is not None and cam.shape == (8, 16)
    cells = np.argwhere(cam > 0)
    assert cells.min(0).tolist() == [2, 4] and cells.max(0).tolist() == [5, 7]  # rows 20-60, columns 40-80 px
    assert cam.max() == pytest.approx(1.0)  # 0.5 everywhere in the crop, scaled to a peak of 1
    both = frame_cam(look, [True, True], (8, 16), 160, 80)
    assert both is not None and both[:6, 10:].min() == pytest.approx(1.0)
    assert both[2:6, 4:8].max() == pytest.approx(0.5)  # the first crop, under the second's peak
    assert frame_cam(look, [False, False], (8, 16), 160, 80) is None


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return brightness_model(tmp_path_factory.mktemp("bright"))


@pytest.fixture
def jumping(tmp_path: Path) -> tuple[Path, list[tuple[int, int]]]:
    """A grey scene (a "no person" for the brightness model) with a small white square that jumps
    to a new place every frame: only its crop is bright enough to be a "person"."""
    spots = positions(20, seed=1)
    return make_video_frames(tmp_path / "jump.mp4", [frame_with_square(x, y) for x, y in spots]), spots


def run(model: Path, video: Path, **over: object) -> list:
    cfg = load_config(None, {"motion.enabled": False, "motion.warmup_frames": 3, "post.smooth_window_s": 0,
                             "zoom.min_side": 100.0, "zoom.input_size": 64, "zoom.model": str(model), **over})
    out = []
    for r in Pipeline(str(video), str(model), cfg).run():
        out.append((r.is_person, r.detections.xyxy.copy(), r.person_prob))
    return out


def test_pipeline_zoom_finds_the_small_bright_square(bright: Path, jumping: tuple[Path, list]) -> None:
    video, spots = jumping
    plain = run(bright, video)
    assert len(plain) == 20 and not any(p for p, _, _ in plain)  # too small in the whole frame
    zoom = run(bright, video, **{"zoom.enabled": True})
    assert len(zoom) == 20
    assert not any(p for p, _, _ in zoom[:3])  # the background is still forming
    for (x, y), (is_person, boxes, prob) in zip(spots[3:], zoom[3:]):
        assert is_person and prob >= 0.5 and len(boxes), (x, y)
        cx, cy = x + SQUARE / 2, y + SQUARE / 2  # a box on the square, in frame pixels
        assert any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes), (boxes, x, y)


def test_a_zoomed_frames_heat_map_is_on_the_crops_find(bright: Path, tmp_path: Path) -> None:
    """Where the crops decide, the frame's CAM (heat-map, zone scores, snapshots) is theirs: its
    peak lies on the small moving square, not on a still white block in the top-left corner that
    the whole frame's own CAM peaks on (too small either way to make the whole frame a person)."""
    rng = np.random.default_rng(3)
    spots = [(-1, -1)] * 3 + [(int(rng.integers(80, 270)), int(rng.integers(60, 140))) for _ in range(12)]
    frames = []
    for x, y in spots:
        img = np.full((180, 320, 3), 100, np.uint8)
        img[:40, :40] = 255  # still: part of the background, so never zoomed into
        if x >= 0:
            img[y : y + SQUARE, x : x + SQUARE] = 255
        frames.append(img)
    video = make_video_frames(tmp_path / "block.mp4", frames)

    def peaks(zoom: bool) -> list[tuple[bool, float, float]]:
        cfg = load_config(None, {"motion.enabled": False, "motion.warmup_frames": 3,
                                 "post.smooth_window_s": 0, "zoom.enabled": zoom, "zoom.min_side": 100.0,
                                 "zoom.input_size": 64, "zoom.model": str(bright)})
        out = []
        for r in Pipeline(str(video), str(bright), cfg).run():
            cy, cx = np.unravel_index(int(np.argmax(r.cam)), r.cam.shape)  # the peak cell's centre, in px
            out.append((r.is_person, (cx + 0.5) * 320 / r.cam.shape[1], (cy + 0.5) * 180 / r.cam.shape[0]))
        return out

    plain, zoomed_ = peaks(False), peaks(True)
    assert not any(p for p, _, _ in plain) and all(px < 40 and py < 40 for _, px, py in plain[3:])
    for (x, y), (is_person, px, py) in zip(spots[3:], zoomed_[3:]):
        assert is_person, (x, y)
        assert x - 16 <= px <= x + SQUARE + 16 and y - 16 <= py <= y + SQUARE + 16, (x, y, px, py)


def test_zoom_every_third_frame_keeps_the_last_look(bright: Path, jumping: tuple[Path, list]) -> None:
    """``zoom.every: 3``: the crop model runs on the first frame after the warm-up and every third
    frame on; the two frames between keep that frame's crops (their boxes stay on the square where
    it was then), and only the crops that ran are counted."""
    video, spots = jumping
    over = {"motion.enabled": False, "motion.warmup_frames": 3, "post.smooth_window_s": 0,
            "zoom.enabled": True, "zoom.every": 3, "zoom.min_side": 100.0, "zoom.input_size": 64,
            "zoom.model": str(bright)}
    pipe = Pipeline(str(video), str(bright), load_config(None, over))
    got = [(r.is_person, r.detections.xyxy.copy()) for r in pipe.run()]
    assert len(got) == 20 and not any(p for p, _ in got[:3])
    for i in range(3, 20):
        ran = 3 + 3 * ((i - 3) // 3)  # frames 3, 6, 9, ... ran the crop model
        is_person, boxes = got[i]
        assert is_person and np.array_equal(boxes, got[ran][1]), i
        cx, cy = spots[ran][0] + SQUARE / 2, spots[ran][1] + SQUARE / 2
        assert any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes), (i, boxes)
    assert pipe.stats is not None and pipe.stats.zoom_crops == 6  # frames 3, 6, ..., 18
    from gapstream.multi import MultiPipeline  # per camera (gapstream_zoom_crops_total) likewise

    cams = {**over, "output.stats_interval": 0, "sources": [{"name": "cam", "uri": str(video)}]}
    multi = MultiPipeline(model=str(bright), config=load_config(None, cams))
    assert len(list(multi.run())) == 20 and multi.camera_stats["cam"]["zoom_crops"] == 6
    with pytest.raises(ConfigError, match="zoom.every"):
        load_config(None, {"zoom.every": 0})


def test_zoom_keeps_out_of_the_exclusion_masks(bright: Path, jumping: tuple[Path, list]) -> None:
    """source.masks hold for the crops too: with the left half of the frame masked, the square is a
    person only where it is in the right half, and no box lands in the mask."""
    video, spots = jumping
    got = run(bright, video, **{"zoom.enabled": True, "source.masks": [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]})
    assert len(got) == 20
    left = [i for i, (x, _) in enumerate(spots) if x >= 0 and x + SQUARE <= 160 - 8]
    right = [i for i, (x, _) in enumerate(spots) if x >= 160 + 8]
    assert left and right
    assert not any(got[i][0] for i in left)
    for i in right:
        is_person, boxes, _ = got[i]
        assert is_person and len(boxes) and (boxes[:, 2] > 160).all(), (i, boxes)


def test_zoom_never_looks_at_an_image_folder(bright: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stills"
    folder.mkdir()
    for i, (x, y) in enumerate(positions(6, seed=2, empty=0)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), frame_with_square(x, y))
    got = run(bright, folder, **{"zoom.enabled": True, "motion.warmup_frames": 0})
    assert len(got) == 6 and not any(p for p, _, _ in got)


def test_zoom_is_on_by_default_with_the_shipped_models_only(tiny_model: Path) -> None:
    """Unset, the zoom follows the person model: the crop model's operating point was chosen with
    the shipped one as the whole frame's model, so a model of one's own runs without crops."""
    def on(**overrides: object) -> bool:
        return zoom_on(load_config(None, overrides))

    assert load_config(None).zoom.enabled is None
    assert on() and on(**{"model.path": str(shipped_model("int8"))})
    assert on(**{"model.path": str(shipped_model("float32"))})
    assert not on(**{"model.path": str(tiny_model)})
    assert on(**{"model.path": str(tiny_model), "zoom.enabled": True})
    assert not on(**{"zoom.enabled": False})
    assert not needs_full_frames(load_config(None, {"model.path": str(tiny_model)}))
    assert needs_full_frames(load_config(None))  # the crops are cut from full-size frames
    assert not needs_full_frames(load_config(ROOT / "configs" / "no-zoom.yaml"))


def test_zoom_config_is_checked(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="zoom.min_side"):
        load_config(None, {"zoom.min_side": 0.5})
    with pytest.raises(ConfigError, match="zoom.crops"):
        load_config(None, {"zoom.crops": 0})
    cfg = load_config(None, {"zoom.enabled": True, "source.decode_to_model": True})
    video = make_video_frames(tmp_path / "v.mp4", [frame_with_square(10, 10)] * 3)
    with pytest.raises(ConfigError, match="zoom"):
        list(Pipeline(str(video), str(tiny_model), cfg).run())
    r = run_cli(str(video), "--model", str(tiny_model), "--json", str(tmp_path / "o.jsonl"),
                "--zoom", "--zoom-model", str(tmp_path / "missing.tflite"))
    assert_one_clear_error(r, "missing.tflite")
    assert not (tmp_path / "o.jsonl").exists()
    crop = tmp_path / "crop.tflite"  # the crop model is an input: never written over
    crop.write_bytes(tiny_model.read_bytes())
    r = run_cli(str(video), "--model", str(tiny_model), "--zoom", "--zoom-model", str(crop),
                "--json", str(crop))
    assert_one_clear_error(r, "crop.tflite", "refusing to overwrite")
    assert crop.read_bytes() == tiny_model.read_bytes()


def test_cli_zoom_json_has_every_frame(bright: Path, jumping: tuple[Path, list], tmp_path: Path) -> None:
    video, _ = jumping
    cfg = tmp_path / "zoom.yaml"
    cfg.write_text("motion:\n  enabled: false\n  warmup_frames: 3\npost:\n  smooth_window_s: 0\n"
                   "zoom:\n  min_side: 100\n  input_size: 64\n")
    r = run_cli(str(video), "--model", str(bright), "--config", str(cfg), "--zoom",
                "--zoom-model", str(bright), "--json", str(tmp_path / "z.jsonl"))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "z.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(20))
    assert sum(x["person"] for x in lines) == 17 and all(x["boxes"] for x in lines[3:])
    assert "zoom crops 17 (0.85 a frame)" in r.stdout + r.stderr  # one crop a frame after the warm-up
    # A crop model given implies the zoom; --no-zoom still turns it off.
    crop = ["--zoom-model", str(bright)]
    for flags, persons in ((crop, 17), ([*crop, "--no-zoom"], 0)):
        out = tmp_path / f"z{persons}.jsonl"
        r = run_cli(str(video), "--model", str(bright), "--config", str(cfg), *flags, "--json", str(out))
        assert r.returncode == 0, r.stderr
        assert sum(json.loads(x)["person"] for x in out.read_text().splitlines()) == persons
        assert ("zoom crops" in r.stdout + r.stderr) == bool(persons)


def test_each_camera_has_its_own_zoom_background(bright: Path, jumping: tuple[Path, list],
                                                 tmp_path: Path) -> None:
    """Two cameras in one run: the jumping square's camera is zoomed into from its own background,
    while a camera whose scene (with a square that never moves) never changes gets no crop. One
    shared background would see the two scenes alternate, and zoom into the still square too."""
    from gapstream.multi import MultiPipeline

    video, _ = jumping
    still = make_video_frames(tmp_path / "still.mp4", [frame_with_square(140, 70)] * 20)
    cfg = load_config(None, {
        "sources": [{"name": "jump", "uri": str(video)}, {"name": "still", "uri": str(still)}],
        "motion.enabled": False, "motion.warmup_frames": 3, "post.smooth_window_s": 0,
        "zoom.enabled": True, "zoom.model": str(bright), "zoom.min_side": 100.0, "zoom.input_size": 64,
        "output.stats_interval": 0,
    })
    seen: dict[str, list[bool]] = {"jump": [], "still": []}
    pipe = MultiPipeline(model=str(bright), config=cfg)
    for r in pipe.run():
        seen[r.camera].append(r.is_person)
    assert seen["jump"] == [False] * 3 + [True] * 17
    assert seen["still"] == [False] * 20
    # The crops are counted per camera (the Prometheus counter gapstream_zoom_crops_total reads these).
    assert pipe.camera_stats["jump"]["zoom_crops"] == 17 and pipe.camera_stats["still"]["zoom_crops"] == 0
    assert pipe.stats is not None and pipe.stats.zoom_crops == 17  # the run's last line: the same crops, once


def test_zoom_uses_the_shipped_crop_model_and_its_threshold(bright: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With no crop model given the zoom runs the shipped one, and the zoomed frames' decision
    threshold is the one chosen with it (its zoom_threshold); the config's thresholds still win,
    and a crop model without one leaves the frame model's."""
    import shutil

    video = make_video_frames(tmp_path / "v.mp4", [frame_with_square(10, 10)] * 3)

    def thresholds(**over: object) -> tuple[float | None, float | None, float | None]:
        post = Pipeline(str(video), str(bright), load_config(None, over)).plan().post
        return post.score_threshold, post.zoom_score_threshold, post.zoom_sustain_s

    own = load_meta(bright).decision_threshold
    shipped = load_meta(DEFAULT_ZOOM_MODEL)
    assert shipped.zoom_threshold is not None and shipped.zoom_sustain_s  # chosen together (stop 20)
    plan = Pipeline(str(video), str(bright), load_config(None, {"zoom.enabled": True})).plan()
    assert plan.zoom is not None and plan.zoom.model_path == str(DEFAULT_ZOOM_MODEL)
    assert thresholds(**{"zoom.enabled": True}) == (own, shipped.zoom_threshold, shipped.zoom_sustain_s)
    assert thresholds() == (own, own, 0.0)
    zoom_at = {"zoom.enabled": True, "post.score_threshold": 0.6}
    assert thresholds(**zoom_at) == (0.6, 0.6, shipped.zoom_sustain_s)
    assert thresholds(**{"zoom.enabled": True, "post.zoom_score_threshold": 0.65,
                         "post.zoom_sustain_s": 0}) == (own, 0.65, 0.0)
    crop = tmp_path / "crop.tflite"
    shutil.copy(bright, crop)
    shutil.copy(bright.with_suffix(".json"), crop.with_suffix(".json"))
    assert "zoom_threshold" not in json.loads(crop.with_suffix(".json").read_text())
    assert thresholds(**{"zoom.enabled": True, "zoom.model": str(crop)}) == (own, own, 0.0)
    meta = load_meta(crop)
    meta.zoom_threshold, meta.zoom_sustain_s = 0.7, 0.4
    save_meta(meta, crop)
    assert (load_meta(crop).zoom_threshold, load_meta(crop).zoom_sustain_s) == (0.7, 0.4)
    assert thresholds(**{"zoom.enabled": True, "zoom.model": str(crop)}) == (own, 0.7, 0.4)
    # The shipped crop model missing: a clear error that names the option to pass.
    monkeypatch.setattr("gapstream.pipeline.DEFAULT_ZOOM_MODEL", tmp_path / "gone.tflite")
    with pytest.raises(ModelError, match="--zoom-model"):
        thresholds(**{"zoom.enabled": True})


def test_zoomed_frames_and_image_folders_have_their_own_threshold(bright: Path, jumping: tuple[Path, list],
                                                                  tmp_path: Path) -> None:
    """The zoom threshold decides the frames the zoom looked into (about 0.93-0.95 here for the
    square's crops); an image folder, never zoomed, keeps the frame model's threshold."""
    video, _ = jumping
    strict = {"zoom.enabled": True, "post.zoom_score_threshold": 0.99}
    assert sum(run(bright, video, **{"zoom.enabled": True})[i][0] for i in range(20)) == 17
    assert not any(p for p, _, _ in run(bright, video, **strict))
    # Sustained for 0.35 s (four frames at 10 fps): the first three zoomed finds are dropped, as
    # the window still holds a frame of the warm-up; their probability is kept as it was.
    held = run(bright, video, **{"zoom.enabled": True, "post.zoom_sustain_s": 0.35})
    assert [p for p, _, _ in held] == [False] * 6 + [True] * 14
    assert all(prob > 0.9 and not len(boxes) for _, boxes, prob in held[3:6])
    folder = tmp_path / "stills"
    folder.mkdir()
    for i in range(3):  # grey 138: a whole-frame person probability between 0.5 and 0.99
        cv2.imwrite(str(folder / f"{i}.png"), np.full((72, 128, 3), 138, np.uint8))
    got = run(bright, folder, **strict)
    assert all(p for p, _, _ in got) and all(0.5 < prob < 0.99 for _, _, prob in got), got


def test_operating_points_writes_the_zoom_threshold(bright: Path, tmp_path: Path) -> None:
    """benchmarks/operating_points.py --zoom-meta stores a dump's 2 % empty-clip threshold in the
    crop model's metadata, where the run time reads it; without one it leaves the file alone."""
    import shutil
    import subprocess
    import sys

    root = tmp_path / "clips"
    clips = make_grey_clips(root)
    crop = tmp_path / "crop.tflite"
    shutil.copy(bright, crop)
    shutil.copy(bright.with_suffix(".json"), crop.with_suffix(".json"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("post:\n  smooth_window_s: 0\n")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "operating_points.py"
    r = subprocess.run([sys.executable, str(script), "--clips", str(root), "--config", str(cfg),
                        "--model", f"Z={bright}", "--sustain", "Z=0.5", "--zoom-meta", f"Zs0.5={crop}",
                        "--two-thresholds", "Z+Z", "--out", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    t2e = report["Z"]["t2e"]
    # The grey empty frames score between 0.5 and 1: the threshold rises above them, and a minimum
    # over 0.5 s (they last 1 s) keeps them. The sustained entry's threshold and window are written.
    assert 0.5 < t2e < 1 and report["Z"]["reached2e"] and report["Zs0.5"]["t2e"] == t2e
    assert (load_meta(crop).zoom_threshold, load_meta(crop).zoom_sustain_s) == (t2e, 0.5)
    # With the whole frame held at 0.5 (rule 20b), no crop threshold removes those frames.
    assert not report["Z2t"]["reached2e"] and report["Z2t"]["t2e"] == 0.999
    before = crop.with_suffix(".json").read_bytes()
    bad = subprocess.run([sys.executable, str(script), "--clips", str(root), "--config", str(cfg),
                          "--model", f"Z={bright}", "--zoom-meta", f"Y={crop}"],
                         capture_output=True, text=True, timeout=180)
    assert_one_clear_error(bad, "--zoom-meta", "Y")
    assert crop.with_suffix(".json").read_bytes() == before
    wrong_names = ((["--two-thresholds", "Z+Y"], "--two-thresholds"), (["--sustain", "Y=0.5"], "--sustain"),
                   (["--sustain", "Z=soon"], "number of seconds"))
    for flags, needle in wrong_names:  # refused before any clip runs
        wrong = subprocess.run([sys.executable, str(script), "--clips", str(root), "--model", f"Z={bright}",
                                *flags], capture_output=True, text=True, timeout=60)
        assert_one_clear_error(wrong, needle)
    # Frames of about 1.0 labelled empty: no threshold keeps them within 2 %, nothing is written.
    clips[0]["segments"][0]["person"] = False
    (root / "labels.json").write_text(json.dumps({"clips": clips}))
    stuck = subprocess.run([sys.executable, str(script), "--clips", str(root), "--config", str(cfg),
                            "--model", f"Z={bright}", "--zoom-meta", f"Z={crop}"],
                           capture_output=True, text=True, timeout=180)
    assert_one_clear_error(stuck, "--zoom-meta", "no threshold keeps Z within 2 %")
    assert crop.with_suffix(".json").read_bytes() == before


def test_tuning_with_the_zoom_on_does_not_write_the_frame_models_threshold(bright: Path,
                                                                           tmp_path: Path) -> None:
    """eval --tune-decision --write-meta with a zoom config would tune the zoomed frames' threshold;
    it is refused with one error line, and the model's metadata is left as it was."""
    import subprocess
    import sys

    cfg = tmp_path / "zoom.yaml"
    cfg.write_text("zoom:\n  enabled: true\n")
    before = bright.with_suffix(".json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "gapstream", "eval", "--clips", str(tmp_path), "--split", "val",
                        "--models", str(bright), "--config", str(cfg), "--tune-decision", "0.02",
                        "--write-meta"], capture_output=True, text=True, timeout=120)
    assert_one_clear_error(r, "--write-meta", "zoom", "--zoom-meta")
    assert bright.with_suffix(".json").read_bytes() == before


def test_zoom_cost_benchmark_counts_the_crops_it_times(bright: Path, jumping: tuple[Path, list],
                                                      tmp_path: Path) -> None:
    """benchmarks/zoom_cost.py times the zoom's parts on the frames where the run time runs them:
    one crop a frame after the warm-up, a third of those with zoom.every 3; a missing clip is one
    error line."""
    import subprocess
    import sys

    video, _ = jumping
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "zoom_cost.py"
    crops = {}
    for every in (1, 3):
        cfg = tmp_path / f"c{every}.yaml"
        cfg.write_text(f"motion:\n  warmup_frames: 3\nzoom:\n  model: {bright}\n  min_side: 100\n"
                       f"  input_size: 64\n  every: {every}\n")
        out = tmp_path / f"r{every}.json"
        r = subprocess.run([sys.executable, str(script), str(video), "--config", str(cfg), "--out", str(out)],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        report = json.loads(out.read_text())
        assert report["frames"] == 20 and report["every"] == every
        assert all(ms >= 0 for ms in report["ms"].values()) and report["ms"]["crop_model"] > 0
        crops[every] = report["crops"]
    assert crops == {1: pytest.approx(17 / 20), 3: pytest.approx(6 / 20)}
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "missing.mp4")],
                         capture_output=True, text=True, timeout=60)
    assert_one_clear_error(bad, "missing.mp4")


def test_zoom_blobs_rankings_choose_the_crops_they_name() -> None:
    """benchmarks/zoom_blobs.py's rankings: by area as the run time, upright blobs first, or the
    wide ones left out; a frame's probability is the best of the first k crops'."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from zoom_blobs import RANKINGS, crop_max

    wide, tall, square = (0, 0, 40, 10, 360, 0.9), (0, 0, 8, 24, 190, 0.2), (0, 0, 10, 10, 100, 0.7)
    frames = [[wide, tall, square], []]  # largest first, as the run time sorts them
    assert RANKINGS["area"](frames[0]) == [wide, tall, square]
    assert RANKINGS["upright1"](frames[0]) == [tall, square, wide]  # keys 190, 100, 360 * 0.25
    assert RANKINGS["tall0.5"](frames[0]) == [tall, square]
    assert crop_max(frames, RANKINGS["area"], 1) == [0.9, 0.0]
    assert crop_max(frames, RANKINGS["upright1"], 2) == [0.7, 0.0]
    assert crop_max(frames, RANKINGS["tall0.75"], 3) == [0.7, 0.0]


def test_zoom_evidence_scores_blobs_by_the_whole_frames_cells() -> None:
    """benchmarks/zoom_evidence.py: a blob's score is the highest cell of the whole frame's score map
    in the cells its box covers (mask pixels to grid cells, at least one); the rankings reorder
    (blob, score) pairs, and a veto zeroes the crops of blobs scoring under it."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from zoom_evidence import RANKINGS, box_scores, crop_max

    score = np.full((4, 8), -5.0, np.float32)
    score[1, 6] = 2.0  # one hot cell at the right
    mask_hw = (40, 80)  # 10 mask pixels a cell
    far_left, right, speck = (0, 0, 20, 40), (55, 5, 75, 25), (61, 11, 62, 12)
    assert box_scores(score, [far_left, right, speck], mask_hw) == [-5.0, 2.0, 2.0]
    big, small = (0, 0, 9, 9, 81, 0.3), (0, 0, 2, 2, 4, 0.9)
    pairs = [(big, -5.0), (small, 2.0)]  # largest first, as the cache keeps them
    assert [b for b, _ in RANKINGS["cam"](pairs)] == [small, big]
    assert [b for b, _ in RANKINGS["area1cam"](pairs)] == [big, small]
    assert crop_max(pairs, 1) == 0.3 and crop_max(pairs, 2) == 0.9
    assert crop_max(pairs, 2, veto=0.0) == 0.9 and crop_max(pairs, 1, veto=0.0) == 0.0
    assert crop_max([], 3) == 0.0


def test_zoom_blobs_reproduces_the_run_times_zoom(bright: Path, tmp_path: Path) -> None:
    """Its baseline (two crops by area) scores each clip as the run time's zoom decides it."""
    import subprocess
    import sys

    from gapstream.training.clips import load_clips

    root = tmp_path / "clips"
    for name, seed in (("people/a.mp4", 1), ("noperson/b.mp4", 2)):
        make_video_frames(root / name, [frame_with_square(x, y) for x, y in positions(30, seed=seed)])
    clips = [{"file": f, "split": "val", "segments": [{"start": 0.0, "end": 3.0, "person": p}]}
             for f, p in (("people/a.mp4", True), ("noperson/b.mp4", False))]
    (root / "labels.json").write_text(json.dumps({"clips": clips}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("zoom:\n  min_side: 100\n")
    out = tmp_path / "r.json"
    script = ROOT / "benchmarks" / "zoom_blobs.py"
    r = subprocess.run([sys.executable, str(script), "--clips", str(root), "--config", str(cfg),
                        "--base", f"A={bright}", "--crop", str(bright), "--crops", "2", "--blobs", "3",
                        "--dumps", str(tmp_path / "dumps"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    screened = json.loads(out.read_text())["area K2"]["clips"]
    zoomed_cfg = load_config(cfg, {"zoom.enabled": True, "zoom.model": str(bright)})
    for clip in load_clips(root, "val"):
        hits = [r.is_person for r in Pipeline(str(clip.path), str(bright), zoomed_cfg).run()]
        rate = sum(hits) / len(hits)
        got = screened[clip.name]
        assert (got["recall"] if clip.name.startswith("people/") else got["fp_rate"]) == pytest.approx(rate)
    assert 0 < screened["people/a.mp4"]["recall"] < 1  # the crops found the square after the warm-up


def test_operating_points_scores_the_whole_frame_alone_unless_asked(tmp_path: Path) -> None:
    """The screening dumps hold the whole frame's model alone, as every stop's did, although the
    zoom is on by default with the shipped models; a config that sets zoom.enabled is obeyed."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from operating_points import frames

    from gapstream.training.clips import load_clips

    root = tmp_path / "clips"
    make_video_frames(root / "people" / "a.mp4", [frame_with_square(x, y) for x, y in positions(14, seed=3)])
    (root / "labels.json").write_text(json.dumps({"clips": [
        {"file": "people/a.mp4", "split": "val", "segments": [{"start": 0.0, "end": 2.0, "person": True}]}]}))
    clips = load_clips(root, "val")
    model = str(shipped_model("int8"))
    cfg = load_config(None, {"motion.warmup_frames": 2, "zoom.min_side": 100.0})
    alone = [p for _, _, p in frames(clips, model, cfg)["people/a.mp4"]]
    plain = [r.person_prob for r in Pipeline(str(clips[0].path), model,
                                               load_config(None, {"motion.warmup_frames": 2,
                                                                  "zoom.enabled": False})).run()]
    assert alone == plain and len(alone) == 14
    asked = load_config(None, {"motion.warmup_frames": 2, "zoom.min_side": 100.0, "zoom.enabled": True,
                               "post.zoom_sustain_s": 0.0})
    zoomed_probs = [p for _, _, p in frames(clips, model, asked)["people/a.mp4"]]
    assert zoomed_probs != alone  # the crops of the moving square count when the config asks for them


def test_the_static_look_finds_a_square_that_never_moves(bright: Path, tmp_path: Path) -> None:
    """A white square that stands still from the first frame: the motion crops never look at it and
    the whole frame is too large for it, but the static look's crop, centred on the whole frame's
    strongest cell, finds it (its box on the square); a static crop under ``static_threshold`` is
    ignored, and the crop model's metadata sets both when the config does not."""
    video = make_video_frames(tmp_path / "still.mp4", [frame_with_square(96, 64)] * 8)
    base = {"zoom.enabled": True, "zoom.min_side": 4.0}
    assert not any(p for p, _, _ in run(bright, video, **base))
    found = run(bright, video, **base, **{"zoom.static_peaks": 1, "zoom.static_threshold": 0.9})
    assert len(found) == 8
    for is_person, boxes, prob in found:
        assert is_person and prob >= 0.9 and len(boxes)
        assert any(b[0] <= 112 <= b[2] and b[1] <= 80 <= b[3] for b in boxes), boxes  # the square's centre
    strict = run(bright, video, **base, **{"zoom.static_peaks": 1, "zoom.static_threshold": 1.0})
    assert not any(p for p, _, _ in strict)
    crop = tmp_path / "crop.tflite"
    crop.write_bytes(bright.read_bytes())
    meta = load_meta(bright)
    meta.zoom_static_peaks, meta.zoom_static_threshold = 1, 0.9
    save_meta(meta, crop)
    assert load_meta(crop).zoom_static_peaks == 1
    assert all(p for p, _, _ in run(bright, video, **base, **{"zoom.model": str(crop)}))
    assert not any(p for p, _, _ in run(bright, video, **base, **{"zoom.model": str(crop),
                                                                   "zoom.static_peaks": 0}))
    with pytest.raises(ConfigError, match="zoom.static_threshold"):
        load_config(None, {"zoom.static_threshold": 1.5})


def test_peak_on_motion_drops_a_crop_whose_person_is_the_still_thing_beside_what_moved(
        bright: Path, jumping: tuple[Path, list], tmp_path: Path) -> None:
    """A still white square (a parked car) beside a small dark square that moves: the crop cut around
    the dark square is bright enough to be a "person", but its CAM peak is on the still square, so
    ``zoom.peak_on_motion`` drops it; a white square that moves itself is still found."""
    frames = []
    for i in range(16):
        img = np.full((180, 320, 3), BG, np.uint8)
        img[70:110, 45:85] = 255  # there from the first frame: part of the background
        if i >= 3:
            y = 58 + 4 * (i % 2)
            img[y : y + 16, 20:36] = 0
        frames.append(img)
    video = make_video_frames(tmp_path / "parked.mp4", frames)
    base = {"zoom.enabled": True, "zoom.min_side": 2.0, "zoom.input_size": 128}
    plain = run(bright, video, **base)
    assert all(p for p, _, _ in plain[4:]) and not any(p for p, _, _ in plain[:3])
    assert not any(p for p, _, _ in run(bright, video, **base, **{"zoom.peak_on_motion": True}))
    moving, spots = jumping
    found = run(bright, moving, **{"zoom.enabled": True, "zoom.peak_on_motion": True})
    assert all(p for p, _, _ in found[3:]) and len(found) == len(spots)


@pytest.mark.parametrize("peak_on_motion", [False, True])
def test_crops_cut_ahead_on_the_helper_thread_look_the_same(bright: Path, jumping: tuple[Path, list],
                                                            peak_on_motion: bool) -> None:
    """The inference stage finds and cuts each batch's motion crops on the zoom's helper thread while
    the whole-frame network runs; the looks are those of finding and cutting in :meth:`Zoom.look`."""
    import av

    from gapstream.zoom import Zoom

    video, _ = jumping
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    cfg = ZoomConfig(min_side=100.0, input_size=64, peak_on_motion=peak_on_motion)
    motion = MotionConfig(warmup_frames=3)
    inline, ahead = Zoom(cfg, motion, str(bright), 1), Zoom(cfg, motion, str(bright), 1)
    looks = [inline.look(0, f) for f in frames]
    cut_ahead = [m for i in range(0, len(frames), 4)
                 for m in ahead.prepare_batch([(0, f) for f in frames[i : i + 4]]).result()]
    assert sum(bool(m and m.regions) for m in cut_ahead) == len(frames) - 3
    for frame, look, m in zip(frames, looks, cut_ahead):
        other = ahead.look(0, frame, None, m)
        assert look is not None and other is not None
        assert np.array_equal(look.regions, other.regions) and np.array_equal(look.probs, other.probs)
        assert np.array_equal(look.cams, other.cams)
    assert any(look is not None and look.prob >= 0.5 for look in looks)


def test_the_gate_reuses_the_zooms_motion_and_keeps_the_same_cells(bright: Path,
                                                                  jumping: tuple[Path, list]) -> None:
    """With the zoom on, the gate decides on the zoom's motion (the same background settings and
    frames) instead of keeping a background of its own: the same cells, warm-up included."""
    import av

    from gapstream.motion import MotionGate
    from gapstream.zoom import Zoom

    video, _ = jumping
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    motion = MotionConfig(warmup_frames=3, hold_s=0.25)
    zoom = Zoom(ZoomConfig(min_side=100.0, input_size=64), motion, str(bright), 1)
    own, reusing = MotionGate(motion), MotionGate(motion)
    grid = (12, 20)
    for k, frame in enumerate(frames):
        prepared = zoom.prepare(0, frame, grid)
        assert prepared is not None and prepared.motion is not None
        assert prepared.motion.frames == k + 1
        mine = own.keep(frame, k / 10, *grid)
        theirs = reusing.keep(frame, k / 10, *grid, prepared.motion)
        assert (mine is None) == (theirs is None) == (k < 3)
        assert mine is None or theirs is not None and np.array_equal(mine, theirs)
    assert mine is not None and 0 < mine.sum() < mine.size  # some cells open, some closed
