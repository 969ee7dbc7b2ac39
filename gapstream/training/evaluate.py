"""Evaluate GAP models on the INRIA Person test split: classification and CAM localisation.

Classification (argmax of the probabilities): accuracy, precision, recall, ROC AUC and
the confusion matrix. Localisation against INRIA's GT person boxes, with boxes from
:func:`gapstream.cam.localize`, the run-time rule (box threshold a parameter, by default the model's own):

* CorLoc: share of positive test images whose top-scoring CAM box has IoU >= 0.5 with a GT box.
* AP@0.5: all boxes of all test images (negatives too) ranked by score, greedy matching
  to GT boxes (each GT once), VOC all-point interpolated average precision.

TFLite models run through :class:`gapstream.gapmodel.GapModel` (no TensorFlow needed);
a Keras model (optional) needs TensorFlow. The metrics are :mod:`gapstream.metrics` (numpy only).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..cam import PAPER_THRESHOLD, cam_batch, localize
from ..config import PostConfig
from ..errors import DataError
from ..metrics import average_precision, classification_metrics, corloc

log = logging.getLogger(__name__)


def localisation_metrics(
    maps: np.ndarray, probs: np.ndarray, kernel: np.ndarray, person_index: int,
    sizes: np.ndarray, gts: list[np.ndarray], threshold: float = PAPER_THRESHOLD,
    box_scale: tuple[float, float] = (1.0, 1.0),
) -> dict:
    """CorLoc and AP@0.5 of CAM boxes for images of original ``sizes (N, 2)`` (width, height),
    by the run-time rule (:func:`gapstream.cam.localize`) at box ``threshold`` and ``box_scale``."""
    cfg = PostConfig(threshold=threshold, box_scale=list(box_scale), score_threshold=0.5)
    cams = cam_batch(maps, kernel, np.argmax(probs, axis=1))
    dets = [localize(c, p, person_index, int(w), int(h), cfg)[1] for c, p, (w, h) in zip(cams, probs, sizes)]
    return {
        "corloc": corloc(dets, gts),
        "ap50": average_precision(dets, gts, 0.5),
        "boxes": int(sum(len(d) for d in dets)),
        "gt_boxes": int(sum(len(g) for g in gts)),
        "gt_images": int(sum(len(g) > 0 for g in gts)),
    }


# ----------------------------------------------------------------------------- evaluation


def gt_boxes(annotations: dict, paths: list[Path], sizes: np.ndarray) -> list[np.ndarray]:
    """GT boxes per image (``annotations`` keyed by path string) in the image file's pixels,
    rescaled if annotated at another size."""
    out = []
    for p, (w, h) in zip(paths, sizes):
        ann = annotations.get(str(p))
        if ann is None or not len(ann.boxes):
            out.append(np.zeros((0, 4), np.float32))
            continue
        boxes = ann.boxes.astype(np.float32).copy()
        if ann.size and ann.size != (int(w), int(h)) and ann.size[0] > 0 and ann.size[1] > 0:
            boxes *= np.array([w / ann.size[0], h / ann.size[1]] * 2, np.float32)
        out.append(boxes)
    return out


def annotated_person_images(root: str | Path, split: str, size: tuple[int, int]
                            ) -> tuple[np.ndarray, np.ndarray, list[Path], list[np.ndarray]]:
    """(images at ``size``, their original sizes, paths, GT boxes) of every annotated person image of
    ``root/split/pos`` (a composite's ``Train`` or ``Test``), in path order."""
    from .inria import Split, list_annotations, load_split_images

    anns = list_annotations(Path(root), split)
    folder = Path(root) / split / "pos"
    if not folder.is_dir() or not anns:
        raise DataError(f"no annotated person images under {folder}")
    paths = sorted(p for p in folder.iterdir() if p.stem in anns)
    x, _, sizes, paths = load_split_images(Split(paths, np.ones(len(paths), np.int64)), size)
    return x, sizes, paths, gt_boxes({str(p): anns[p.stem] for p in paths}, paths, sizes)


def _run_batches(fn: Any, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    probs, maps = [], []
    for i in range(0, len(images), batch_size):
        p, m = fn(images[i : i + batch_size])
        probs.append(np.asarray(p, np.float32))
        maps.append(np.asarray(m, np.float32))
    return np.concatenate(probs), np.concatenate(maps)


def evaluate(
    data_root: str | Path,
    models: list[str | Path] = (),
    keras_model: Any = None,
    threshold: float = PAPER_THRESHOLD,
    seed: int = 0,
    batch_size: int = 32,
    num_threads: int | None = None,
    cache_dir: str | Path | None = None,
    box_scale: tuple[float, float] = (1.0, 1.0),
) -> dict:
    """Evaluate TFLite ``models`` (and an optional Keras model or path) on the INRIA test split.

    Returns ``{"data": counts, "threshold": t, "models": {name: metrics}}`` where name is
    ``keras`` or the TFLite model's quantization (its file stem if that repeats).
    """
    from ..gapmodel import GapModel
    from .inria import default_cache_dir, load_inria, load_split_images

    data = load_inria(data_root, splits=("test",), seed=seed)
    cache = cache_dir or default_cache_dir()
    loaded: dict[tuple[int, int], tuple] = {}

    def test_images(size: tuple[int, int]) -> tuple:
        if size not in loaded:
            x, y, sizes, paths = load_split_images(data.test, size, cache)
            loaded[size] = (x, y, sizes, paths, gt_boxes(data.test_boxes, paths, sizes))
        return loaded[size]

    # name, fn, input (h, w), kernel, person index. Keep-aspect models see every image at their
    # training canvas: exact for canvas-shaped test sets (the surveillance composite).
    runs: list[tuple[str, Any, tuple[int, int], np.ndarray, int]] = []
    if keras_model is not None:
        from .build import dense_weights, dual_output
        from .export import load_keras

        km = load_keras(keras_model) if isinstance(keras_model, (str, Path)) else keras_model
        kernel, _ = dense_weights(km)
        if km.name.startswith("gapfcn_"):  # a scene model: its maps feed the dense layer per cell
            from .fcn import scene_dual_output

            dual = scene_dual_output(km)
            kernel = kernel - kernel[:, ::-1]  # the CAM of a class: its evidence over the other
        else:
            dual = dual_output(km)

        def keras_fn(x: np.ndarray, dual: Any = dual) -> tuple:
            p, m = dual(x.astype(np.float32), training=False)
            return p.numpy(), m.numpy()

        runs.append(("keras", keras_fn, (int(km.input_shape[1]), int(km.input_shape[2])), kernel, 1))
    names: set[str] = set()
    for path in models:
        gm = GapModel(path, num_threads)
        name = gm.meta.quantization if gm.meta.quantization not in names else Path(path).stem
        names.add(name)
        runs.append((name, gm.predict, tuple(gm.meta.input_size), gm.meta.dense_kernel,
                     gm.meta.person_index))

    results: dict[str, dict] = {}
    for name, fn, size, kernel, pidx in runs:
        x, y, sizes, paths, gts = test_images(size)
        t0 = time.perf_counter()
        probs, maps = _run_batches(fn, x, batch_size)
        secs = time.perf_counter() - t0
        res = classification_metrics(y, probs, pidx)
        res.update(localisation_metrics(maps, probs, kernel, pidx, sizes, gts, threshold, box_scale))
        res["ms_per_image"] = 1000 * secs / max(1, len(x))
        results[name] = res
        log.info("%s: accuracy %.4f auc %.4f corloc %.4f ap50 %.4f", name, res["accuracy"], res["auc"],
                 res["corloc"], res["ap50"])
    counts = data.counts()
    if loaded:
        counts["test"]["decoded"] = len(next(iter(loaded.values()))[0])
    return {"data": counts, "threshold": threshold, "box_scale": list(box_scale), "models": results}


THRESHOLDS = tuple(round(t, 2) for t in np.arange(PAPER_THRESHOLD, 0.86, 0.05))
BOX_SCALES = tuple((fx, fy) for fx in (0.8, 1.0, 1.25, 1.5) for fy in (1.0, 1.25, 1.5, 1.75, 2.0))


def _validation_boxes(data_root: str | Path, model: str | Path, seed: int, cache_dir: str | Path | None
                      ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """(model, probs, maps, sizes, GT boxes) of the annotated person images of the validation split."""
    from ..gapmodel import GapModel
    from .inria import Split, default_cache_dir, list_annotations, load_inria, load_split_images

    data = load_inria(data_root, splits=("train",), seed=seed)
    anns = list_annotations(data.root, "Train")
    pos = [p for p, y in zip(data.val.paths, data.val.labels) if y == 1 and p.stem in anns]
    if not pos:
        raise DataError(f"no annotated validation person images under {data.root / 'Train'}")
    gm = GapModel(model)
    x, _, sizes, paths = load_split_images(Split(pos, np.ones(len(pos), np.int64)),
                                           tuple(gm.meta.input_size), cache_dir or default_cache_dir())
    gts = gt_boxes({str(p): anns[p.stem] for p in paths}, paths, sizes)
    probs, maps = _run_batches(gm.predict, x, 32)
    return gm, probs, maps, sizes, gts


def tune_threshold(
    data_root: str | Path, model: str | Path, thresholds: tuple[float, ...] = THRESHOLDS,
    seed: int = 0, cache_dir: str | Path | None = None, box_scale: tuple[float, float] = (1.0, 1.0),
) -> tuple[float, dict[float, float]]:
    """The CAM box threshold with the best CorLoc on the person images of the validation
    split (never the test split); returns (best, CorLoc per threshold)."""
    gm, probs, maps, sizes, gts = _validation_boxes(data_root, model, seed, cache_dir)
    scores = {t: localisation_metrics(maps, probs, gm.meta.dense_kernel, gm.meta.person_index, sizes,
                                      gts, t, box_scale)["corloc"] for t in thresholds}
    best = max(scores, key=lambda t: (scores[t], -abs(t - PAPER_THRESHOLD)))
    log.info("threshold sweep on %d validation person images: %s; best %.2f", len(gts),
             " ".join(f"{t:.2f}:{100 * c:.1f}" for t, c in scores.items()), best)
    return best, scores


def tune_box_scale(data_root: str | Path, model: str | Path, threshold: float,
                   scales: tuple[tuple[float, float], ...] = BOX_SCALES, seed: int = 0,
                   cache_dir: str | Path | None = None) -> tuple[tuple[float, float], dict]:
    """The box (width, height) factors with the best CorLoc on the validation person images at
    ``threshold``; ties go to the smallest change. Returns (best, CorLoc per factor pair)."""
    gm, probs, maps, sizes, gts = _validation_boxes(data_root, model, seed, cache_dir)
    scores = {s: localisation_metrics(maps, probs, gm.meta.dense_kernel, gm.meta.person_index, sizes,
                                      gts, threshold, s)["corloc"] for s in scales}
    best = max(scores, key=lambda s: (scores[s], -abs(s[0] - 1) - abs(s[1] - 1)))
    log.info("box scale sweep at threshold %.2f: best %s (CorLoc %.1f %%)", threshold, best,
             100 * scores[best])
    return best, scores


def _pct(v: float) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.2f}"


def render_markdown(result: dict) -> str:
    """A Markdown table of :func:`evaluate`'s result."""
    t = result.get("data", {}).get("test", {})
    lines = [
        f"Test split: {t.get('total', '?')} images ({t.get('pos', '?')} person, "
        f"{t.get('neg', '?')} no person; {t.get('pos_with_boxes', '?')} with GT boxes). "
        f"CAM box threshold {result.get('threshold')} of the max, box factors "
        f"{' x '.join(str(v) for v in result.get('box_scale', (1.0, 1.0)))}.",
        "",
        "| model | accuracy % | precision % | recall % | ROC AUC % | CorLoc % | AP@0.5 % "
        "| TN FP FN TP | ms/img |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in result.get("models", {}).items():
        (tn, fp), (fn, tp) = r["confusion"]
        lines.append(
            f"| {name} | {_pct(r['accuracy'])} | {_pct(r['precision'])} | {_pct(r['recall'])} | "
            f"{_pct(r['auc'])} | {_pct(r['corloc'])} | {_pct(r['ap50'])} | {tn} {fp} {fn} {tp} | "
            f"{r.get('ms_per_image', float('nan')):.1f} |"
        )
    return "\n".join(lines) + "\n"
