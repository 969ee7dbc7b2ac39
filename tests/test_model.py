"""Training side: INRIA loader, metrics, and a tiny train -> export -> CAM round trip.

Everything runs on images generated into ``tmp_path`` in INRIA Person's layout; no
network, no real data. Tests that need TensorFlow are marked ``train``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gapstream.detections import Detections
from gapstream.errors import DataError, GapstreamError
from gapstream.metrics import average_precision, classification_metrics, corloc, roc_auc
from gapstream.training.evaluate import render_markdown
from gapstream.training.inria import find_root, format_annotation, load_images, load_inria, parse_annotation

ANNOTATION = """# PASCAL Annotation Version 1.00

Image filename : "Test/pos/crop_000001.png"
Image size (X x Y x C) : 640 x 480 x 3
Database : "The INRIA Rhone-Alpes Annotated Person Database"
Objects with ground truth : 2 { "PASperson" "PASperson" }

# Details for pedestrian 1 ("PASperson")
Original label for object 1 "PASperson" : "UprightPerson"
Center point on object 1 "PASperson" (X, Y) : (232, 217)
Bounding box for object 1 "PASperson" (Xmin, Ymin) - (Xmax, Ymax) : (193, 82) - (278, 346)

# Details for pedestrian 2 ("PASperson")
Original label for object 2 "PASperson" : "UprightPerson"
Center point on object 2 "PASperson" (X, Y) : (400, 250)
Bounding box for object 2 "PASperson" (Xmin, Ymin) - (Xmax, Ymax) : (350, 120) - (452, 400)
"""


def make_inria(root: Path, counts: dict[str, tuple[int, int]] | None = None, seed: int = 0) -> Path:
    """Write a small synthetic INRIA Person tree: persons are bright upright figures on clutter."""
    counts = counts or {"Train": (10, 14), "Test": (5, 8)}
    rng = np.random.default_rng(seed)
    for split, (npos, nneg) in counts.items():
        for kind in ("pos", "neg", "annotations"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        for kind, n in (("pos", npos), ("neg", nneg)):
            for i in range(n):
                w, h = int(rng.integers(120, 180)), int(rng.integers(100, 150))
                img = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
                img = cv2.GaussianBlur(img, (5, 5), 0)
                name = f"{kind}_{split.lower()}_{i:03d}.png"
                if kind == "pos":
                    bw, bh = int(w * rng.uniform(0.2, 0.3)), int(h * rng.uniform(0.6, 0.8))
                    x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                    color = tuple(int(c) for c in rng.integers(170, 255, 3))
                    cv2.ellipse(img, (x1 + bw // 2, y1 + bh // 6), (bw // 4, bh // 7), 0, 0, 360, color, -1)
                    cv2.rectangle(img, (x1 + bw // 6, y1 + bh // 3), (x1 + 5 * bw // 6, y1 + bh), color, -1)
                    (root / split / "annotations" / f"{Path(name).stem}.txt").write_text(
                        format_annotation(f"{split}/pos/{name}", w, h, [(x1, y1, x1 + bw, y1 + bh)]))
                cv2.imwrite(str(root / split / kind / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


# ----------------------------------------------------------------------------- loader


def test_parse_annotation() -> None:
    ann = parse_annotation(ANNOTATION)
    assert ann.filename == "Test/pos/crop_000001.png"
    assert ann.size == (640, 480)
    assert ann.labels == ["PASperson", "PASperson"]
    np.testing.assert_array_equal(ann.boxes, [[193, 82, 278, 346], [350, 120, 452, 400]])
    assert parse_annotation("nothing here").boxes.shape == (0, 4)


def test_loader_balances_and_splits(tmp_path: Path) -> None:
    root = make_inria(tmp_path / "INRIAPerson", {"Train": (10, 16), "Test": (5, 9)})
    d = load_inria(tmp_path, val_fraction=0.3, seed=3)  # the folder containing INRIAPerson/ works too
    assert d.root == root
    assert d.raw_counts == {"train_pos": 10, "train_neg": 16, "test_pos": 5, "test_neg": 9}
    # Excess negatives dropped: 10 + 10 in Train, 3 + 3 of them for validation; 5 + 5 in Test.
    assert d.train.counts() == {"total": 14, "pos": 7, "neg": 7}
    assert d.val.counts() == {"total": 6, "pos": 3, "neg": 3}
    assert d.test.counts() == {"total": 10, "pos": 5, "neg": 5}
    assert not set(d.train.paths) & set(d.val.paths)
    assert all(("pos" in p.parent.name) == bool(y) for p, y in zip(d.train.paths, d.train.labels))
    # Every test positive has its GT box.
    assert len(d.test_boxes) == 5 and all(a.boxes.shape == (1, 4) for a in d.test_boxes.values())
    assert d.counts()["test"]["pos_with_boxes"] == 5
    # Fixed seed: the same split again; another seed: another split.
    again = load_inria(root, val_fraction=0.3, seed=3)
    assert again.val.paths == d.val.paths and again.test.paths == d.test.paths
    other = load_inria(root, val_fraction=0.3, seed=4)
    assert other.val.paths != d.val.paths or other.test.paths != d.test.paths


def test_loader_never_drops_positives(tmp_path: Path) -> None:
    make_inria(tmp_path, {"Train": (8, 6), "Test": (6, 4)})
    d = load_inria(tmp_path, val_fraction=0.25)
    assert d.train.counts()["pos"] + d.val.counts()["pos"] == 8
    assert d.val.counts() == {"total": 4, "pos": 2, "neg": 2}
    assert d.test.counts() == {"total": 10, "pos": 6, "neg": 4}


def test_loader_uses_list_files(tmp_path: Path) -> None:
    root = make_inria(tmp_path, {"Train": (6, 6), "Test": (3, 3)})
    pos = sorted((root / "Train" / "pos").iterdir())[:4]
    lines = [f"Train/pos/{p.name}" for p in pos] + ["Train/pos/gone.png"]
    (root / "Train" / "pos.lst").write_text("\n".join(lines) + "\n")
    d = load_inria(root, splits=("train",), val_fraction=0.0)
    assert d.raw_counts["train_pos"] == 4
    assert sorted(p for p, y in zip(d.train.paths, d.train.labels) if y) == pos
    assert d.test is None


def test_loader_names_missing_folder(tmp_path: Path) -> None:
    root = make_inria(tmp_path, {"Train": (2, 2), "Test": (2, 2)})
    for p in (root / "Test" / "neg").iterdir():
        p.unlink()
    (root / "Test" / "neg").rmdir()
    load_inria(root, splits=("train",))  # Train alone is fine
    with pytest.raises(DataError, match=r"Test/neg"):
        load_inria(root)
    with pytest.raises(DataError, match="nowhere"):
        find_root(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Train"):
        find_root(tmp_path / "empty")


def test_load_images_resizes_caches_and_skips_broken(tmp_path: Path) -> None:
    root = make_inria(tmp_path / "d", {"Train": (2, 1)})
    paths = sorted((root / "Train" / "pos").glob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images, sizes, ok = load_images([*paths, broken], 32, cache_dir=tmp_path / "cache")
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert ok.tolist() == [True, True, False]
    h, w = cv2.imread(str(paths[0])).shape[:2]
    assert tuple(sizes[0]) == (w, h)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again, _, _ = load_images([*paths, broken], 32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again, images)


# ----------------------------------------------------------------------------- metrics


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9])) == pytest.approx(1.0)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_classification_metrics_known_values() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    person = np.array([0.9, 0.8, 0.3, 0.2, 0.6, 0.1, 0.4, 0.7])
    r = classification_metrics(labels, np.stack([1 - person, person], 1))
    assert r["confusion"] == [[3, 1], [1, 3]]  # [[TN, FP], [FN, TP]]
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["precision"] == pytest.approx(0.75) and r["recall"] == pytest.approx(0.75)
    assert r["auc"] == pytest.approx(14 / 16)  # pairs (pos, neg) ranked right: 14 of 16


def test_corloc_and_ap_known_values() -> None:
    gt = [np.array([[0, 0, 10, 10]], np.float32), np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
          np.zeros((0, 4), np.float32)]

    def det(boxes: list, scores: list) -> Detections:
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))

    dets = [
        det([[0, 0, 10, 11], [50, 50, 60, 60]], [0.9, 0.3]),  # TP (0.9), FP (0.3)
        det([[40, 40, 50, 50], [20, 20, 30, 30]], [0.8, 0.5]),  # top box misses (FP 0.8), TP (0.5)
        det([[0, 0, 5, 5]], [0.7]),  # FP on an image without persons
    ]
    # CorLoc over images with GT: image 0 hit, image 1 miss.
    assert corloc(dets, gt) == pytest.approx(0.5)
    # Ranked: 0.9 TP, 0.8 FP, 0.7 FP, 0.5 TP, 0.3 FP; 3 GT boxes.
    # Precision at the recall steps: 1/1 at recall 1/3, 2/4 at recall 2/3 -> AP = (1 + 0.5) / 3.
    assert average_precision(dets, gt) == pytest.approx(0.5)
    # A duplicate detection of an already matched GT box is a false positive.
    dup = [det([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8])]
    assert average_precision(dup, gt[:1]) == pytest.approx(1.0)
    assert average_precision([det([[0, 0, 10, 10]], [0.9]), det([], [])], gt[:2]) == pytest.approx(1 / 3)
    assert corloc([det([], [])], gt[:1]) == 0.0


def test_render_markdown() -> None:
    r = {"confusion": [[1, 0], [0, 1]], "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "auc": 1.0,
         "corloc": float("nan"), "ap50": 0.5, "ms_per_image": 2.0}
    md = render_markdown({"data": {"test": {"total": 2, "pos": 1, "neg": 1}}, "threshold": 0.2,
                          "models": {"int8": r}})
    assert "| int8 | 100.00 | 100.00 | 100.00 | 100.00 | n/a | 50.00 | 1 0 0 1 | 2.0 |" in md


# ----------------------------------------------------------------------------- no TensorFlow at run time


def test_model_modules_do_not_import_tensorflow() -> None:
    modules = ", ".join(f"gapstream.training.{m}"
                        for m in ("cli_verbs", "evaluate", "inria", "build", "export", "train"))
    code = (f"import sys, {modules}; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_tensorflow_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from gapstream.training import cli_verbs

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    args = argparse.Namespace()
    with pytest.raises(GapstreamError, match=r"pip install 'gapstream\[train\]'"):
        cli_verbs.train_main(args)
    with pytest.raises(GapstreamError, match=r"gapstream\[train\]"):
        cli_verbs.export_main(args)


# ----------------------------------------------------------------------------- train -> export -> CAM


SIZE = 128


def copy_model(model: Path, folder: Path) -> Path:
    """A copy of a model and its sidecar, for tests that write metadata."""
    copy = folder / model.name
    shutil.copy(model, copy)
    shutil.copy(model.with_suffix(".json"), copy.with_suffix(".json"))
    return copy


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of a tiny MobileNet (alpha 0.25, 128x128) and both TFLite exports."""
    pytest.importorskip("tensorflow")
    from gapstream.training.export import calibration_images, export, load_keras
    from gapstream.training.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("train")
    root = make_inria(tmp / "INRIAPerson", {"Train": (12, 14), "Test": (6, 7)})
    cfg = TrainConfig(data=str(root), weights="none", alpha=0.25, input_size=SIZE, epochs=1, batch_size=8,
                      val_fraction=0.25, out=str(tmp / "run"), cache_dir=str(tmp / "cache"), verbose=0)
    summary = train(cfg)
    model = load_keras(summary["model"])
    calib = calibration_images(root, SIZE, num=16, cache_dir=tmp / "cache")
    paths = export(model, tmp / "models", calib, metrics={"int8": {"note": "test"}})
    return {"root": root, "summary": summary, "model": model, "paths": paths, "calib": calib, "tmp": tmp}


@pytest.mark.train
def test_train_writes_best_model_and_log(trained: dict) -> None:
    s = trained["summary"]
    assert Path(s["model"]).is_file()
    assert (Path(s["model"]).parent / "log.csv").is_file()
    assert (Path(s["model"]).parent / "train.json").is_file()
    assert s["counts"]["train"] == {"total": 18, "pos": 9, "neg": 9}
    assert s["counts"]["val"] == {"total": 6, "pos": 3, "neg": 3}
    assert s["best_epoch"] == 1 and "val_loss" in s["history"]


@pytest.mark.train
def test_augmentation_keeps_shape_and_range() -> None:
    tf = pytest.importorskip("tensorflow")
    from gapstream.training.train import augment_batch

    x = tf.random.uniform((4, 32, 32, 3), 0, 255)
    y = augment_batch(x, tf.constant([1, 2], tf.int64), 0.1, 0.1, 0.15)
    assert y.shape == x.shape
    assert float(tf.reduce_min(y)) >= 0 and float(tf.reduce_max(y)) <= 255
    jitter = augment_batch(x, tf.constant([3, 4], tf.int64), 0.1, 0.1, 0.15, color=0.5)
    assert float(tf.reduce_min(jitter)) >= 0 and float(tf.reduce_max(jitter)) <= 255
    same = augment_batch(x, tf.constant([1, 2], tf.int64), 0.0, 0.0, 0.0)
    # With no shift/shear/zoom only flips remain: each image is itself or its mirror.
    for a, b in zip(x.numpy(), same.numpy()):
        assert np.allclose(a, b, atol=1e-3) or np.allclose(a[:, ::-1], b, atol=1e-3)


@pytest.mark.train
def test_exported_models_have_two_outputs(trained: dict) -> None:
    from gapstream.meta import load_meta
    from gapstream.runtime import make_interpreter

    paths = trained["paths"]
    assert set(paths) == {"float32", "int8"}
    for q, path in paths.items():
        assert path.name == f"gapstream_person_{q}.tflite"
        meta = load_meta(path)
        assert meta.quantization == q and meta.labels == ["no_person", "person"] and meta.person_index == 1
        assert meta.input_size == (SIZE, SIZE) and meta.dense_kernel.shape == (256, 2)
        assert meta.alpha == 0.25 and meta.backbone == "mobilenet"
        interp = make_interpreter(str(path))
        interp.allocate_tensors()
        (inp,) = interp.get_input_details()
        outs = sorted(interp.get_output_details(), key=lambda o: len(o["shape"]))
        assert list(inp["shape"]) == [1, SIZE, SIZE, 3]
        assert [list(o["shape"]) for o in outs] == [[1, 2], [1, 4, 4, 256]]
        if q == "float32":
            assert inp["dtype"] == np.float32 and all(o["dtype"] == np.float32 for o in outs)
        else:
            assert inp["dtype"] == np.uint8 and all(o["dtype"] == np.int8 for o in outs)
    assert load_meta(paths["int8"]).metrics == {"note": "test"}


@pytest.mark.train
def test_tflite_cam_matches_keras(trained: dict) -> None:
    from gapstream.cam import cam_batch
    from gapstream.gapmodel import GapModel
    from gapstream.training.build import dense_weights, dual_output
    from gapstream.training.inria import load_split_images

    data = load_inria(trained["root"], splits=("test",))
    x, _, _, _ = load_split_images(data.test, SIZE, trained["tmp"] / "cache")
    kp, km = (t.numpy() for t in dual_output(trained["model"])(x.astype(np.float32), training=False))
    kernel, _ = dense_weights(trained["model"])
    classes = np.argmax(kp, axis=1)
    keras_cam = cam_batch(km, kernel, classes)
    for q, min_r in (("float32", 0.99), ("int8", 0.95)):
        gm = GapModel(trained["paths"][q])
        probs, maps = gm.predict(x)  # the whole split as one batch: the batch dimension resizes
        assert probs.shape == (len(x), 2) and maps.shape == (len(x), 4, 4, 256)
        assert probs.dtype == np.float32 and maps.dtype == np.float32
        np.testing.assert_allclose(gm.meta.dense_kernel, kernel, atol=1e-6)
        cam = cam_batch(maps, gm.meta.dense_kernel, classes)
        r = np.corrcoef(cam.ravel(), keras_cam.ravel())[0, 1]
        assert r > min_r, f"{q}: CAM correlation {r:.4f}"
        tol = 1e-3 if q == "float32" else 0.1
        np.testing.assert_allclose(probs, kp, atol=tol)


@pytest.mark.train
def test_evaluate_runs_on_all_three(trained: dict) -> None:
    from gapstream.training.evaluate import evaluate

    paths = trained["paths"]
    res = evaluate(trained["root"], [paths["float32"], paths["int8"]], trained["model"], threshold=0.2,
                   cache_dir=trained["tmp"] / "cache")
    assert set(res["models"]) == {"keras", "float32", "int8"}
    assert res["data"]["test"]["total"] == 12 and res["data"]["test"]["pos_with_boxes"] == 6
    for r in res["models"].values():
        (tn, fp), (fn, tp) = r["confusion"]
        assert tn + fp + fn + tp == 12 and tp + fn == 6
        assert r["accuracy"] == pytest.approx((tn + tp) / 12)
        assert r["gt_boxes"] == 6 and r["gt_images"] == 6
        assert (r["corloc"] * 6) == pytest.approx(round(r["corloc"] * 6))  # a share of the 6 images
        assert r["boxes"] > 0 or r["ap50"] == 0  # no box, no precision
    assert res["models"]["keras"]["accuracy"] == pytest.approx(res["models"]["float32"]["accuracy"])
    assert "| int8 |" in render_markdown(res)


@pytest.mark.train
def test_cli_verbs_eval_writes_metrics(trained: dict, tmp_path: Path) -> None:
    import argparse

    from gapstream.meta import load_meta
    from gapstream.training import cli_verbs

    int8 = trained["paths"]["int8"]
    model = copy_model(int8, tmp_path)  # a copy: the shared fixture's sidecar stays as it was
    p = argparse.ArgumentParser()
    cli_verbs.add_eval_args(p)
    out = tmp_path / "eval"
    args = p.parse_args(["--data", str(trained["root"]), "--models", str(model), "--out", str(out),
                         "--write-meta", "--cache-dir", str(trained["tmp"] / "cache")])
    assert cli_verbs.eval_main(args) == 0
    assert "| int8 |" in (out / "eval.md").read_text()
    measured = json.loads((out / "eval.json").read_text())["models"]["int8"]
    meta = load_meta(model)  # hash still valid after the metrics update
    assert meta.metrics["n_test"] == 12
    assert meta.metrics["accuracy"] == round(measured["accuracy"], 4)
    assert load_meta(int8).metrics == {"note": "test"}  # the shared model is untouched


@pytest.mark.train
def test_tune_threshold_uses_validation_and_writes_it_to_the_metadata(trained: dict, tmp_path: Path) -> None:
    import argparse

    from gapstream.meta import load_meta
    from gapstream.training import cli_verbs
    from gapstream.training.evaluate import THRESHOLDS, tune_threshold

    int8 = trained["paths"]["int8"]
    best, sweep = tune_threshold(trained["root"], int8, cache_dir=trained["tmp"] / "cache")
    assert best in THRESHOLDS and set(sweep) == set(THRESHOLDS)
    top = [t for t in THRESHOLDS if sweep[t] == max(sweep.values())]
    assert best == min(top, key=lambda t: abs(t - 0.2))  # ties go to the paper's threshold
    model = copy_model(int8, tmp_path)
    p = argparse.ArgumentParser()
    cli_verbs.add_eval_args(p)
    args = p.parse_args(["--data", str(trained["root"]), "--models", str(model), "--tune-threshold",
                         "--write-meta", "--cache-dir", str(trained["tmp"] / "cache")])
    assert cli_verbs.eval_main(args) == 0
    meta = load_meta(model)
    assert meta.cam_threshold == best and meta.metrics["cam_threshold"] == best
