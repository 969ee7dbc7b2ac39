"""Accuracy on the INRIA test split: gapstream (the ``gapstream eval`` code) next to OpenCV's HOG."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..cam import PAPER_THRESHOLD
from ..credentials import redact_text
from ..detections import Detections
from ..meta import load_meta
from ..metrics import average_precision, classification_metrics, corloc, roc_auc
from ..paths import DATA_DIR, RESULTS_DIR, shipped_model
from ..training.evaluate import evaluate, gt_boxes
from ..training.evaluate import render_markdown as eval_markdown
from ..training.inria import load_inria
from .baselines import HOG_PARAMS
from .baselines import hog_python as find_hog_python
from .machine import machine_info
from .runner import run_worker


def accuracy(data: str | Path, models: list[str | Path], hog_python: str | None = None,
             threshold: float = PAPER_THRESHOLD, seed: int = 0, skip_hog: bool = False,
             box_scale: tuple[float, float] = (1.0, 1.0)) -> dict:
    """INRIA test split: gapstream (via gapstream.training.evaluate) next to OpenCV's HOG detector.

    HOG: an image counts as positive when it has at least one detection (SVM margin above
    ``detectMultiScale``'s default hit threshold, 0); ROC AUC ranks images by their best margin;
    HOG boxes, scored by their margin, go through the same CorLoc / AP@0.5 code as the CAM boxes.
    """

    result = (evaluate(data, list(models), None, threshold, seed, box_scale=box_scale) if models
              else {"models": {}})
    result.setdefault("data", {})
    if skip_hog:
        return result
    py, why = find_hog_python(hog_python)
    if py is None:
        result.setdefault("notes", []).append(f"HOG skipped: {why}")
        return result
    inria = load_inria(data, splits=("test",), seed=seed)
    split = inria.test
    assert split is not None
    res = run_worker({"method": "hog_images", "images": [str(p) for p in split.paths]}, python=py,
                     sample_memory=False)
    if res.get("error"):
        result.setdefault("notes", []).append(f"HOG failed: {res['error']}")
        return result
    keep = [i for i, r in enumerate(res["images"]) if r is not None]
    items = [res["images"][i] for i in keep]
    labels = split.labels[keep]
    paths = [split.paths[i] for i in keep]
    sizes = np.array([r["size"] for r in items], np.int64)
    dets = [Detections(np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                       np.asarray(r["scores"], np.float32).ravel()) for r in items]
    best = np.array([d.scores.max() if len(d) else -1.0 for d in dets])
    detected = (best > -1.0).astype(np.float64)
    probs = np.stack([1 - detected, detected], axis=1)
    m = classification_metrics(labels, probs, 1)
    m["auc"] = roc_auc(labels, best)
    gts = gt_boxes(inria.test_boxes, paths, sizes)
    m.update({"corloc": corloc(dets, gts), "ap50": average_precision(dets, gts, 0.5),
              "boxes": int(sum(len(d) for d in dets)), "gt_boxes": int(sum(len(g) for g in gts)),
              "ms_per_image": 1000 * res["wall_s"] / max(1, len(items)),
              "opencv": res.get("opencv"), "params": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in HOG_PARAMS.items()}})
    result["models"]["HOG (OpenCV default people detector)"] = m
    return result


def render_accuracy(result: dict, data: str, command: str) -> str:
    m = machine_info()
    text = [
        "# Accuracy on the INRIA Person test split: gapstream vs OpenCV HOG",
        "",
        f"Data: `{data}`. Command: `{command}`. Machine: {m['cpu']}, {m['cores']} cores, {m['date']}.",
        "",
        eval_markdown(result).rstrip(),
        "",
        "HOG: an image is 'person' when detectMultiScale returns at least one detection (SVM margin above "
        "its default hit threshold 0); its ROC AUC ranks images by their best margin; its boxes (scored by "
        "margin) are matched to the same ground truth with the same CorLoc / AP@0.5 code "
        "(gapstream.training.evaluate). CAM boxes: the run-time rule (gapstream.cam.localize with the "
        "config's defaults: the paper's threshold rule, split where two CAM peaks have a valley between "
        "them, ranked by CAM mass, then the box factors), scored by the person probability. "
        "ms/img: inference only for gapstream (batch 32, images pre-resized), "
        "full-image detection for HOG.",
    ]
    for n in result.get("notes", []):
        text.append(f"\n- {n}")
    if "composite" in str(data) or "paired" in str(data):
        text.append(
            "\nNote: this test split is composite (real INRIA person crops pasted into real INRIA "
            "negative scenes; see gapstream/training/composite.py). OpenCV's default people detector was "
            "trained on INRIA's own training set, which contains these crops, so HOG's numbers here are "
            "optimistic for HOG.")
    return "\n".join(text) + "\n"


def accuracy_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="INRIA test split: gapstream vs OpenCV HOG (accuracy, CorLoc, AP@0.5)")
    default_data = DATA_DIR / "INRIAPerson"
    if not (default_data / "Test" / "pos").is_dir():
        default_data = DATA_DIR / "INRIAPerson-paired"
    p.add_argument("--data", default=str(default_data), help=f"INRIA root (default {default_data})")
    p.add_argument("--models", nargs="*", metavar="TFLITE",
                   help="TFLite models (default: the int8 and float32 models in models/)")
    p.add_argument("--hog-python", metavar="PYTHON", help="interpreter with OpenCV 4 for HOG")
    p.add_argument("--no-hog", action="store_true")
    p.add_argument("--threshold", type=float,
                   help="CAM box threshold (default: the int8 model's own cam_threshold)")
    p.add_argument("--out", default=str(RESULTS_DIR), metavar="DIR")
    args = p.parse_args(argv)
    models = args.models
    if models is None:
        models = [shipped_model(q) for q in ("int8", "float32")]
        models = [m for m in models if m.is_file()]
        if not models:
            print("accuracy: no model in models/ (pass --models)", file=sys.stderr)
    threshold = args.threshold
    if threshold is None:
        threshold = load_meta(models[0]).cam_threshold if models else PAPER_THRESHOLD
    # The box rule is the run time's: the int8 model's own box factors, like its threshold.
    box_scale = load_meta(models[0]).box_scale if models else (1.0, 1.0)
    result = accuracy(args.data, models, args.hog_python, threshold, skip_hog=args.no_hog,
                      box_scale=box_scale)
    command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = redact_text(render_accuracy(result, args.data, command.strip()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.md").write_text(md)
    (out / "accuracy.json").write_text(redact_text(json.dumps(result, indent=1, default=str)) + "\n")
    print(md)
    return 0
