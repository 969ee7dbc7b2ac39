"""Real-footage evaluation (eval --clips / --images) and the aspect-keeping input path.

A hand-made "brightness" model flags exactly the bright frames, so clips whose labels and
bright frames are known give exact recall and false-positive figures through the pipeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import PipelineConfig, load_config
from gapstream.meta import load_meta
from gapstream.metrics import bootstrap_mean_ci
from gapstream.training.clips import load_clips
from gapstream.training.footage import Score, evaluate_footage, render_markdown, summary

from .helpers import brightness_model, make_grey_clips, make_video_frames

PER_FRAME = load_config(None, {"post.smooth_window_s": 0})


def per_frame_yaml(folder: Path) -> str:
    """A config file that decides frame by frame (no score history), for the CLI."""
    path = folder / "per_frame.yaml"
    path.write_text("post:\n  smooth_window_s: 0\n")
    return str(path)
FPS = 10


@pytest.fixture(scope="module")
def bright(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return brightness_model(tmp_path_factory.mktemp("bright"))


def _frames(levels: list[int], h: int = 72, w: int = 128) -> list[np.ndarray]:
    return [np.full((h, w, 3), v, np.uint8) for v in levels]


def make_labelled_clips(root: Path) -> dict:
    """Two eval clips and one train clip with known labels and known bright (flagged) frames."""
    root.mkdir(parents=True, exist_ok=True)
    # walk.mp4: 1 s empty then 2 s person; 4 of the 20 person frames dark, 1 of the 10 empty frames bright.
    walk = [30] * 10 + [220] * 20
    walk[3] = 220
    for i in (12, 15, 18, 25):
        walk[i] = 30
    empty = [30] * 20  # yard.mp4: 2 s empty; 2 bright frames
    empty[5] = empty[6] = 220
    make_video_frames(root / "people" / "walk.mp4", _frames(walk), FPS)
    make_video_frames(root / "noperson" / "yard.mp4", _frames(empty), FPS)
    make_video_frames(root / "people" / "train_only.mp4", _frames([220] * 10), FPS)
    labels = {"clips": [
        {"file": "people/walk.mp4", "split": "eval", "segments": [
            {"start": 0.0, "end": 1.0, "person": False}, {"start": 1.0, "end": 3.0, "person": True}]},
        {"file": "noperson/yard.mp4", "split": "eval",
         "segments": [{"start": 0.0, "end": 2.0, "person": False}]},
        {"file": "people/train_only.mp4", "split": "train", "segments": [
            {"start": 0.0, "end": 1.0, "person": True}]},
    ]}
    (root / "labels.json").write_text(json.dumps(labels))
    return labels


def test_labels_and_split(tmp_path: Path) -> None:
    make_labelled_clips(tmp_path / "clips")
    names = [c.name for c in load_clips(tmp_path / "clips", "eval")]
    assert names == ["people/walk.mp4", "noperson/yard.mp4"]
    assert [c.name for c in load_clips(tmp_path / "clips", "train")] == ["people/train_only.mp4"]
    walk = load_clips(tmp_path / "clips", "eval")[0]
    assert walk.label_at(0.5) is False and walk.label_at(1.0) is True and walk.label_at(2.95) is True
    assert walk.label_at(0.9, margin=0.2) is None and walk.label_at(1.5, margin=0.2) is True


def test_eval_clips_counts_recall_and_false_positives_exactly(bright: Path, tmp_path: Path) -> None:
    make_labelled_clips(tmp_path / "clips")
    # Frame by frame (no score history), so that each designed frame counts as itself.
    report = evaluate_footage([bright], tmp_path / "clips", "eval", config=PER_FRAME)
    r = report["models"][bright.name]
    walk, yard = r["clips"]
    assert (walk["frames"], walk["person_frames"], walk["empty_frames"]) == (30, 20, 10)
    assert walk["hits"] == 16 and walk["recall"] == pytest.approx(0.8)
    assert walk["false_positives"] == 1 and walk["fp_rate"] == pytest.approx(0.1)
    assert yard["person_frames"] == 0 and yard["recall"] is None and yard["fp_rate"] == pytest.approx(0.1)
    s = r["clips_summary"]
    assert s["mean_recall"] == pytest.approx(0.8) and s["max_fp_rate"] == pytest.approx(0.1)
    assert s["frame_fp_rate"] == pytest.approx(3 / 30)
    table = render_markdown(report)
    assert "| people/walk.mp4 | eval | 30 | 20 | 80.0 % | 10 | 10.0 % |" in table
    # Not a shipped person model: the run time did not zoom, and the report says so.
    assert r["zoom"] is None and "Run time: the zoom off" in table


def test_eval_report_names_the_crop_model_where_the_run_time_zooms(bright: Path) -> None:
    from gapstream.paths import shipped_model
    from gapstream.training.footage import zoom_model

    assert zoom_model(shipped_model("int8"), PipelineConfig()) == "gapstream_zoomcrop_int8.tflite"
    assert zoom_model(bright, PipelineConfig()) is None
    on = load_config(None, {"zoom.enabled": True, "zoom.model": "/x/crops.tflite"})
    assert zoom_model(bright, on) == "crops.tflite"
    assert zoom_model(shipped_model("float32"), load_config(None, {"zoom.enabled": False})) is None


def test_eval_image_folders(bright: Path, tmp_path: Path) -> None:
    pos, neg = tmp_path / "pos", tmp_path / "neg"
    for folder, levels in ((pos, [220, 220, 220, 30]), (neg, [30] * 5)):
        folder.mkdir()
        for i, img in enumerate(_frames(levels)):
            cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    r = evaluate_footage([bright], images=[(pos, True), (neg, False)])["models"][bright.name]
    p, n = r["images"]
    assert (p["person_frames"], p["hits"], p["recall"]) == (4, 3, pytest.approx(0.75))
    assert (n["empty_frames"], n["false_positives"], n["fp_rate"]) == (5, 0, 0.0)


def test_eval_cli_writes_footage_report(bright: Path, tmp_path: Path) -> None:
    make_labelled_clips(tmp_path / "clips")
    r = subprocess.run([sys.executable, "-m", "gapstream", "eval", "--clips", str(tmp_path / "clips"),
                        "--split", "train", "--models", str(bright), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out" / "footage.json").read_text())
    clips = rep["models"][bright.name]["clips"]
    assert [c["name"] for c in clips] == ["people/train_only.mp4"] and clips[0]["recall"] == 1.0
    bad = subprocess.run([sys.executable, "-m", "gapstream", "eval", "--models", str(bright)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("gapstream: error:")


def test_eval_scores_several_clip_folders_as_one_set(bright: Path, tmp_path: Path) -> None:
    """--clips is repeatable: the clips of every folder are scored, summarised and tuned together."""
    make_labelled_clips(tmp_path / "a")
    make_video_frames(tmp_path / "b" / "noperson" / "sky.mp4", _frames([220] * 5 + [30] * 15), FPS)
    (tmp_path / "b" / "labels.json").write_text(json.dumps({"clips": [
        {"file": "noperson/sky.mp4", "split": "train",
         "segments": [{"start": 0.0, "end": 2.0, "person": False}]}]}))
    r = subprocess.run([sys.executable, "-m", "gapstream", "eval", "--clips", str(tmp_path / "a"), "--clips",
                        str(tmp_path / "b"), "--split", "train", "--models", str(bright), "--tune-decision",
                        "0.3", "--config", per_frame_yaml(tmp_path), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out" / "footage.json").read_text())
    m = rep["models"][bright.name]
    assert [c["name"] for c in m["clips"]] == ["people/train_only.mp4", "noperson/sky.mp4"]
    assert rep["clips_root"] == f"{tmp_path / 'a'}, {tmp_path / 'b'}"
    assert m["clips_summary"]["mean_recall"] == 1.0 and m["clips_summary"]["max_fp_rate"] == 0.25
    # The threshold comes from the second folder's empty frames: 5 of 20 flagged is within 30 %.
    assert m["decision"]["threshold"] == 0.5 and m["decision"]["frame_fp_rate"] == 0.25


@pytest.mark.parametrize(("frame_hw", "input_hw"), [((180, 320), (64, 112)), ((320, 180), (112, 64)),
                                                      ((240, 240), (112, 112))])
def test_keep_aspect_input_size_and_maps(bright: Path, tmp_path: Path, frame_hw: tuple,
                                         input_hw: tuple) -> None:
    meta = load_meta(bright)
    assert meta.input_size_for(*frame_hw) == input_hw
    h, w = frame_hw
    frames = [np.full((h, w, 3), 150, np.uint8) for _ in range(3)]  # bright enough to be "person"
    frames[1][h // 4 : h // 2, w // 8 : w // 3] = 255  # the brightest object, top left
    clip = make_video_frames(tmp_path / "clip.mp4", frames, FPS)
    cfg = PipelineConfig()
    cfg.post.threshold = 0.9  # only the object's cells (1.0) pass, not the background (0.59)
    results = [(r.cam.shape, r.detections.xyxy.copy(), r.is_person)
               for r in Pipeline(str(clip), str(bright), cfg).run()]
    assert [shape for shape, _, _ in results] == [(input_hw[0] // 16, input_hw[1] // 16)] * 3
    _, boxes, person = results[1]
    assert person
    # A box in the frame's own pixels, around the bright object (CAM cells are 16 input px).
    assert len(boxes) >= 1
    x1, y1, x2, y2 = boxes[0]
    assert 0 <= x1 < w / 3 and 0 <= y1 < h / 2 and x2 <= w and y2 <= h
    assert x1 <= w / 8 + w / 7 and y1 <= h / 4 + h / 7


def test_fixed_input_model_ignores_the_frame_aspect(tmp_path: Path) -> None:
    fixed = brightness_model(tmp_path, keep_aspect=False)
    assert load_meta(fixed).input_size_for(720, 1280) == (64, 112)
    assert load_meta(fixed).input_size_for(1280, 720) == (64, 112)


def test_input_long_side_from_metadata_and_config(bright: Path, tmp_path: Path) -> None:
    meta = load_meta(bright)
    meta.input_long_side = 224
    assert meta.input_size_for(720, 1280) == (128, 224) and meta.input_size_for(1280, 720) == (224, 128)
    assert meta.input_size_for(720, 1280, long_side=160) == (96, 160)  # the config's override wins
    clip = make_video_frames(tmp_path / "c.mp4", _frames([200, 200], h=90, w=160), FPS)
    cfg = PipelineConfig()
    cfg.model.input_long_side = 224
    assert [r.cam.shape for r in Pipeline(str(clip), str(bright), cfg).run()] == [(8, 14)] * 2


def test_tune_decision_uses_only_the_empty_frames() -> None:
    from gapstream.training.footage import Score, tune_decision

    scores = [Score("a", "val", person_probs=[0.9, 0.7, 0.55, 0.0], empty_probs=[0.6, 0.0, 0.0, 0.0]),
              Score("b", "val", empty_probs=[0.8, 0.0, 0.0, 0.0, 0.0])]
    strict = tune_decision(scores, 0.1)  # 1 of 9 empty frames is already 11 %
    assert strict["threshold"] == 0.805 and strict["frame_fp_rate"] == 0.0 and strict["mean_recall"] == 0.25
    mid = tune_decision(scores, 0.12)
    assert mid["threshold"] == 0.605 and mid["frame_fp_rate"] == pytest.approx(1 / 9)
    assert mid["max_fp_rate"] == pytest.approx(0.2) and mid["frame_recall"] == 0.5
    assert tune_decision(scores, 0.25)["threshold"] == 0.5  # the argmax's own threshold
    assert strict["reached"] and mid["reached"]
    # Confidently wrong: no threshold of the grid brings 1 of 2 empty frames (p = 1.0) under 10 %.
    stuck = tune_decision([Score("d", "val", person_probs=[0.9], empty_probs=[1.0, 0.0])], 0.1)
    assert not stuck["reached"] and stuck["threshold"] == 0.999 and stuck["frame_fp_rate"] == 0.5
    assert "No decision threshold reaches" in render_markdown(
        {"clips_root": "x", "split": "val", "models": {"m": {"clips": [], "images": [], "decision": stuck,
                                                             "clips_summary": summary([])}}})
    with pytest.raises(ValueError, match="no empty"):
        tune_decision([Score("c", "val", person_probs=[0.9])], 0.01)


def test_tuned_decision_threshold_becomes_the_models_default(bright: Path, tmp_path: Path) -> None:
    """eval --tune-decision on the val split writes the threshold into the model's metadata; runs
    then use it unless the config sets post.score_threshold; the eval split is refused."""
    import shutil

    from gapstream import Pipeline
    from gapstream.config import load_config
    from gapstream.meta import load_meta

    model = tmp_path / "m" / bright.name
    model.parent.mkdir()
    shutil.copy(bright, model)
    shutil.copy(bright.with_suffix(".json"), model.with_suffix(".json"))
    root = tmp_path / "clips"
    clips = make_grey_clips(root, FPS)
    quiet = {"output.stats_interval": 0, "post.smooth_window_s": 0}
    before = [r.person_prob for r in Pipeline(str(root / "noperson" / "yard.mp4"), str(model),
                                              load_config(None, quiet)).run()]
    assert 0.5 < max(before) < 0.99, max(before)  # the grey frames are flagged at the default 0.5
    cmd = [sys.executable, "-m", "gapstream", "eval", "--clips", str(root), "--models", str(model),
           "--config", per_frame_yaml(tmp_path)]
    r = subprocess.run([*cmd, "--split", "val", "--tune-decision", "0", "--write-meta", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out" / "footage.json").read_text())["models"][model.name]
    t = load_meta(model).decision_threshold
    assert t == rep["decision"]["threshold"] and max(before) < t < 0.999
    decision = rep["decision"]
    assert decision["frame_fp_rate"] == 0 and decision["frame_recall"] == pytest.approx(0.5, abs=0.06)
    for overrides, flagged in (({}, 10), ({"post.score_threshold": 0.5}, 20)):
        cfg = load_config(None, {**quiet, **overrides})
        got = sum(r.is_person for r in Pipeline(str(root / "people" / "walk.mp4"), str(model), cfg).run())
        assert got == flagged, overrides
    bad = subprocess.run([*cmd, "--split", "eval", "--tune-decision", "0.01"], capture_output=True, text=True,
                         timeout=120)
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode != 0 and last.startswith("gapstream: error: --tune-decision")
    # Frames of about 1.0 labelled empty: no threshold gets there, and the metadata is left alone.
    clips[0]["segments"][0]["person"] = False
    (root / "labels.json").write_text(json.dumps({"clips": clips}))
    stuck = subprocess.run([*cmd, "--split", "val", "--tune-decision", "0", "--write-meta"],
                           capture_output=True, text=True, timeout=120)
    assert stuck.returncode == 0, stuck.stderr
    assert "No decision threshold reaches" in stuck.stdout and "metadata is left as it was" in stuck.stdout
    assert load_meta(model).decision_threshold == t


def test_mean_recall_has_a_bootstrap_interval_over_the_clips() -> None:
    """The summary's 90 % interval resamples clips: it holds the mean, lies within the clips'
    range, widens when one clip differs, and is the same on every run."""
    assert bootstrap_mean_ci([0.7]) is None
    assert bootstrap_mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    lo, hi = bootstrap_mean_ci([1.0, 1.0, 1.0, 1.0, 0.0])
    assert 0.0 <= lo < 0.8 < hi <= 1.0 and (lo, hi) == bootstrap_mean_ci([1.0, 1.0, 1.0, 1.0, 0.0])
    narrow = bootstrap_mean_ci([0.8, 0.82, 0.78, 0.81, 0.79])
    assert narrow[1] - narrow[0] < 0.05 < hi - lo
    scores = [Score("a", "eval", 10, 10, 0, hits=10), Score("b", "eval", 10, 10, 0, hits=2),
              Score("c", "eval", 10, 0, 10, false_positives=1)]  # c has no person frame: not a recall
    s = summary(scores)
    assert s["mean_recall"] == pytest.approx(0.6) and s["mean_recall_ci90"] == bootstrap_mean_ci([1.0, 0.2])
    report = {"clips_root": "x", "split": "eval", "models": {"m": {
        "clips": [x.to_json() for x in scores], "images": [], "clips_summary": s}}}
    lo, hi = s["mean_recall_ci90"]
    assert f"mean recall 60.0 %, 90 % interval over the clips {100 * lo:.1f} %-{100 * hi:.1f} %" \
        in render_markdown(report)


def test_clip_calibration_draws_run_time_scale_windows_from_every_clip(tmp_path: Path) -> None:
    from gapstream.errors import ModelError
    from gapstream.training.export import clip_calibration

    make_grey_clips(tmp_path)  # two 128x72 val clips: 230 then 138, and 30 then 138
    calib = clip_calibration([tmp_path], "val", (32, 48), long_side=96, num=8, seed=0)
    assert calib.shape == (8, 32, 48, 3) and calib.dtype == np.uint8
    levels = {int(v) for v in np.unique(calib)}
    assert 230 in levels and 30 in levels  # both clips, each early and late
    assert 138 in levels
    small = clip_calibration([tmp_path], "val", (90, 160), long_side=96, num=2, seed=0)
    assert small.shape == (2, 90, 160, 3)  # a frame smaller than the window is resized to it
    with pytest.raises(ModelError, match="no train clips"):
        clip_calibration([tmp_path], "train", (32, 48), long_side=96)
