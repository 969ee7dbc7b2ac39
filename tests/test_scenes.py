"""The scene recipe: training scenes, composites, the stem-feature trainer and keep-aspect export."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream.gapmodel import GapModel
from gapstream.meta import load_meta
from gapstream.training.scenes import CANVAS, SCALE_REGIMES, SceneSet, build_scene_set, composite, split_crops

from .helpers import make_video_frames


def make_sources(root: Path) -> dict[str, Path]:
    """Tiny stand-ins for every source: labelled clips, scenes, person crops, external photos."""
    rng = np.random.default_rng(0)
    clips = root / "clips"
    make_video_frames(clips / "people" / "a.mp4", [np.full((90, 160, 3), 200, np.uint8)] * 20, 10)
    make_video_frames(clips / "noperson" / "b.mp4", [np.full((90, 160, 3), 40, np.uint8)] * 20, 10)
    make_video_frames(clips / "people" / "held.mp4", [np.full((90, 160, 3), 90, np.uint8)] * 10, 10)
    (clips / "labels.json").write_text(json.dumps({"clips": [
        {"file": "people/a.mp4", "split": "train", "segments": [{"start": 0, "end": 2.0, "person": True}]},
        {"file": "noperson/b.mp4", "split": "train", "segments": [{"start": 0, "end": 2.0, "person": False}]},
        {"file": "people/held.mp4", "split": "eval", "segments": [{"start": 0, "end": 1.0, "person": True}]},
    ]}))
    folders = {"clips": clips}
    for name, n, shape in (("neg", 10, (120, 160)), ("crops", 14, (160, 96)),
                           ("external/pos/cam", 10, (100, 80)), ("external/neg/pets", 10, (80, 100))):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
            fname = f"crop{i // 2:06d}{'ab'[i % 2]}.png" if name == "crops" else f"{i:03d}.jpg"
            cv2.imwrite(str(d / fname), img)
        folders[name.split("/")[0]] = root / name.split("/")[0]
    return folders


def blob_scenes(n: int) -> SceneSet:
    """``n`` random 64x112 images, every second one with a bright "person" blob (label 1)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, 64, 112, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, 20:50, 40:60] = 255
    return SceneSet(x, y.astype(np.int32), np.array(["synthetic"] * n))


def test_crops_split_by_source_image(tmp_path: Path) -> None:
    crops = [tmp_path / f"crop{i:06d}{s}.png" for i in range(14) for s in "ab"]
    train, test = split_crops(crops)
    assert {p.stem[4:10] for p in train}.isdisjoint({p.stem[4:10] for p in test})
    assert len(test) == 4 and len(train) == 24  # source images 0 and 7 held out, both of their crops


def test_composite_pastes_persons_with_boxes_inside_the_canvas() -> None:
    rng = np.random.default_rng(1)
    bg = np.full((*CANVAS, 3), 100, np.uint8)
    person = np.zeros((160, 96, 3), np.uint8)
    person[32:128, 16:80] = 250
    for _ in range(20):
        img, boxes = composite(bg, [person], rng, count=2)
        assert img.shape == bg.shape and len(boxes) <= 2
        h, w = CANVAS
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
        for x1, y1, x2, y2 in boxes.astype(int):
            if y1 > 0 and y2 < h:  # not cut by the frame edge: surveillance scales, >= ~6 % of the height
                assert (y2 - y1) >= 0.05 * h
            if x2 - x1 > 2 and y2 - y1 > 2:  # the person is visible in its box (occlusion hides a part)
                assert img[y1:y2, x1:x2].max() > 130


def test_scene_set_takes_every_source_and_holds_out_validation(tmp_path: Path) -> None:
    src = make_sources(tmp_path)
    train, val = build_scene_set(src["clips"], src["neg"], src["crops"], src["external"], every_s=0.2)
    assert train.x.shape[1:] == (*CANVAS, 3) and train.x.dtype == np.uint8
    counts, vcounts = train.counts(), val.counts()
    assert set(counts) == {"clips", "composites", "cam", "pets"}
    assert counts["cam"][0] == 0 and counts["pets"][1] == 0  # labels follow the pos/neg folders
    assert counts["composites"][1] == counts["composites"][0] > 0  # paired: each scene with and without
    assert "clips" in vcounts  # the last 20 % of each train clip is validation
    # Only the train split of the clips: the eval clip's grey level (90) never appears unaltered.
    assert sum(counts["clips"]) + sum(vcounts.get("clips", [0, 0])) <= 22


def test_a_second_external_folder_adds_sources_and_keeps_the_first_ones(tmp_path: Path) -> None:
    """``--external`` is repeatable: the images drawn from the first folder stay the same."""
    src = make_sources(tmp_path)
    more = tmp_path / "more"
    for sub, label in (("pos/street", 1), ("neg/road", 0)):
        (more / sub).mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(more / sub / f"{i:03d}.jpg"), np.full((60, 90, 3), 30 + 40 * label + i, np.uint8))
    one, one_val = build_scene_set(None, None, None, src["external"])
    two, two_val = build_scene_set(None, None, None, [src["external"], more])
    assert set(two.counts()) == {"cam", "pets", "street", "road"}
    assert two.counts()["street"][0] == 0 and two.counts()["road"][1] == 0
    first = np.isin(two.source, ["cam", "pets"])
    assert np.array_equal(two.x[first], one.x) and np.array_equal(two.y[first], one.y)
    assert len(two_val.y) == len(one_val.y) + 2  # every 10th image of each folder is validation


def test_scale_mix_keeps_the_set_and_adds_close_and_tiny_persons(tmp_path: Path) -> None:
    """``scale_mix``: as many images, still paired, with persons outside the surveillance range."""
    src = make_sources(tmp_path)
    plain, _ = build_scene_set(src["clips"], src["neg"], src["crops"], src["external"], every_s=0.2)
    mixed, _ = build_scene_set(src["clips"], src["neg"], src["crops"], src["external"], every_s=0.2,
                               scale_mix=True)
    assert mixed.counts() == plain.counts()
    heights = []
    rng = np.random.default_rng(0)
    person = np.full((160, 96, 3), 250, np.uint8)
    bg = np.zeros((*CANVAS, 3), np.uint8)
    for (lo, hi), _share in SCALE_REGIMES:
        boxes = np.concatenate([composite(bg, [person], rng, count=1, min_frac=lo, max_frac=hi)[1]
                                for _ in range(10)])
        heights.append((boxes[:, 3] - boxes[:, 1]).max() / CANVAS[0])
    assert heights[1] > 0.3 and heights[2] < 0.1  # close persons (cut by the frame) and tiny ones


def test_train_and_export_scene_model(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from gapstream.training.export import export_scene, load_keras
    from gapstream.training.train_scenes import SceneTrainConfig, train_scenes

    data = blob_scenes(24)
    x = data.x
    cfg = SceneTrainConfig(weights=None, out=str(tmp_path / "run"), epochs=1, batch=8, pooling="topk")
    summary = train_scenes(cfg, data, data)
    assert summary["val_by_source"]["synthetic"]["n"] == 24
    model = load_keras(tmp_path / "run" / "model.keras")
    paths = export_scene(model, tmp_path / "models", x[:16])
    cams = {}
    for q, path in paths.items():
        meta = load_meta(path)
        assert meta.input_mode == "keep_aspect" and meta.output_stride == 16 and meta.pooling == "topk"
        assert meta.input_size == (64, 112) and meta.input_size_for(720, 1280) == (64, 112)
        # Portrait frames get a portrait input; the maps follow.
        gm = GapModel(path, input_size=meta.input_size_for(1280, 720))
        probs, maps = gm.predict(np.ascontiguousarray(x[:4].transpose(0, 2, 1, 3)))
        assert probs.shape == (4, 2) and maps.shape == (4, 7, 4, meta.dense_kernel.shape[0])
        probs, maps = GapModel(path).predict(x[:8])
        assert maps.shape[1:3] == (4, 7)
        cams[q] = maps @ meta.dense_kernel[:, 1]
    # Top-k pools the same share of cells at any input size: TFLite at the portrait size
    # matches the Keras model built at that size.
    from gapstream.training.fcn import build_scene_model

    portrait, _, _ = build_scene_model(None, (112, 64), pooling="topk")
    portrait.set_weights(model.get_weights())
    xp = np.ascontiguousarray(x[:4].transpose(0, 2, 1, 3))
    tfl, _ = GapModel(paths["float32"], input_size=(112, 64)).predict(xp)
    np.testing.assert_allclose(tfl, portrait.predict(xp.astype(np.float32), verbose=0), atol=1e-4)
    r = np.corrcoef(cams["int8"].ravel(), cams["float32"].ravel())[0, 1]
    assert r > 0.9, f"int8 vs float CAM correlation {r:.3f} at 64x112"


def test_distillation_uses_the_teachers_probabilities(tmp_path: Path) -> None:
    """A student trained with --distill gets targets blended from the labels and the teacher's
    probabilities, computed from the cached stem features by the teacher's own upper layers."""
    pytest.importorskip("tensorflow")
    from gapstream.errors import GapstreamError
    from gapstream.training.export import load_keras
    from gapstream.training.fcn import build_scene_model
    from gapstream.training.train_scenes import SceneTrainConfig, stem_features, teacher_probs, train_scenes

    data = blob_scenes(16)
    x = data.x
    teacher_dir = tmp_path / "teacher"
    teacher_cfg = SceneTrainConfig(weights=None, out=str(teacher_dir), epochs=1, batch=8, pooling="topk")
    train_scenes(teacher_cfg, data, data)
    teacher_path = str(teacher_dir / "model.keras")
    teacher = load_keras(teacher_path)
    import keras

    keras.utils.set_random_seed(0)  # the same random stem as the teacher's (no ImageNet weights here)
    _, stem, _ = build_scene_model(None, (64, 112), pooling="topk")
    probs = teacher_probs(teacher_path, stem, stem_features(stem, x))
    np.testing.assert_allclose(probs, teacher.predict(x.astype(np.float32), verbose=0), atol=1e-4)
    keras.utils.set_random_seed(1)
    _, other, _ = build_scene_model(None, (64, 112), pooling="topk")
    with pytest.raises(GapstreamError, match="frozen stem differs"):
        teacher_probs(teacher_path, other, stem_features(other, x))
    cfg = SceneTrainConfig(weights=None, out=str(tmp_path / "student"), epochs=1, batch=8, pooling="topk",
                           distill=teacher_path, distill_weight=0.5)
    summary = train_scenes(cfg, data, data)
    assert summary["config"]["distill"] == teacher_path and (tmp_path / "student" / "model.keras").is_file()


def test_init_starts_from_a_trained_model_and_refuses_another_architecture(tmp_path: Path) -> None:
    """--init: training starts from the given model's weights (fine-tuning), not from a fresh head."""
    pytest.importorskip("tensorflow")
    from gapstream.errors import GapstreamError
    from gapstream.training.export import load_keras
    from gapstream.training.train_scenes import SceneTrainConfig, train_scenes

    data = blob_scenes(16)
    base_cfg = SceneTrainConfig(weights=None, out=str(tmp_path / "base"), epochs=2, batch=8, pooling="topk",
                                lr=1e-2)
    train_scenes(base_cfg, data, data)
    base_path = str(tmp_path / "base" / "model.keras")
    # A learning rate too small to move anything: what comes out is what went in.
    cfg = SceneTrainConfig(weights=None, out=str(tmp_path / "tuned"), epochs=1, batch=8, pooling="topk",
                           lr=1e-12, init=base_path)
    assert train_scenes(cfg, data, data)["config"]["init"] == base_path
    fresh = SceneTrainConfig(weights=None, out=str(tmp_path / "fresh"), epochs=1, batch=8, pooling="topk",
                             lr=1e-12)
    train_scenes(fresh, data, data)
    base, tuned, untouched = (load_keras(tmp_path / d / "model.keras") for d in ("base", "tuned", "fresh"))
    # trainable weights only: batch-norm statistics follow the data whatever the learning rate
    for a, b in zip(tuned.trainable_weights, base.trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert any(not np.allclose(np.asarray(a), np.asarray(b))
               for a, b in zip(untouched.trainable_weights, base.trainable_weights))
    # another random stem (seed 1, no ImageNet weights) is another architecture for --init
    other = SceneTrainConfig(weights=None, out=str(tmp_path / "other"), epochs=1, batch=8, pooling="topk",
                             init=base_path, seed=1)
    with pytest.raises(GapstreamError, match="not a model of this architecture"):
        train_scenes(other, data, data)


def test_frozen_trunk_trains_only_the_dense_layer(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from gapstream.training.build import DENSE_NAME
    from gapstream.training.export import load_keras
    from gapstream.training.fcn import build_scene_model
    from gapstream.training.train_scenes import SceneTrainConfig, train_scenes

    data = blob_scenes(24)
    x = data.x
    cfg = SceneTrainConfig(weights=None, out=str(tmp_path / "run"), epochs=2, batch=8, pooling="topk",
                           frozen_trunk=True)
    summary = train_scenes(cfg, data, data)
    assert summary["val_by_source"]["synthetic"]["n"] == 24
    trained = load_keras(tmp_path / "run" / "model.keras")
    # the same seed builds the same initial network: only the dense layer may have moved
    import keras

    keras.utils.set_random_seed(cfg.seed)
    initial, _, _ = build_scene_model(None, (64, 112), pooling="topk")
    for a, b in zip(trained.get_layer("trunk").get_weights(), initial.get_layer("trunk").get_weights()):
        np.testing.assert_array_equal(a, b)
    moved = [not np.allclose(a, b) for a, b in zip(trained.get_layer(DENSE_NAME).get_weights(),
                                                    initial.get_layer(DENSE_NAME).get_weights())]
    assert any(moved)
    # the saved model's probabilities are the probe's: the whole chain runs end to end
    probs = trained.predict(x.astype(np.float32), verbose=0)
    assert probs.shape == (24, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("flag", ["--init", "--distill"])
def test_train_from_a_missing_model_is_one_clear_error(tmp_path: Path, flag: str) -> None:
    import subprocess
    import sys

    from .test_bad_input import assert_one_clear_error

    src = make_sources(tmp_path)
    r = subprocess.run([sys.executable, "-m", "gapstream", "train", "--clips", str(src["clips"]),
                        "--weights", "none", flag, str(tmp_path / "nope.keras"),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert_one_clear_error(r, flag, "nope.keras")
    assert not (tmp_path / "run").exists()
