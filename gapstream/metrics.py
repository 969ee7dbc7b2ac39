"""Detection and classification metrics, numpy only: IoU, accuracy / precision / recall, ROC AUC,
CorLoc and VOC AP@0.5. Shared by ``gapstream eval`` and the HOG accuracy benchmark."""

from __future__ import annotations

import numpy as np

from .detections import Detections


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a (N, 4)`` and ``b (M, 4)`` in xyxy -> ``(N, M)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged (like scipy.stats.rankdata)."""
    x = np.asarray(x, np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties count one half)."""
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, person_index: int = 1) -> dict:
    """Accuracy, precision, recall, F1, ROC AUC and confusion ``[[TN, FP], [FN, TP]]``."""
    labels = np.asarray(labels).ravel().astype(int)
    probs = np.asarray(probs, np.float64)
    pred = (np.argmax(probs, axis=1) == person_index).astype(int)
    tp = int(np.sum((pred == 1) & (labels == 1)))
    tn = int(np.sum((pred == 0) & (labels == 0)))
    fp = int(np.sum((pred == 1) & (labels == 0)))
    fn = int(np.sum((pred == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "n": len(labels),
        "accuracy": (tp + tn) / len(labels) if len(labels) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "auc": roc_auc(labels, probs[:, person_index]),
        "confusion": [[tn, fp], [fn, tp]],
    }


def corloc(dets: list[Detections], gts: list[np.ndarray], iou_thr: float = 0.5) -> float:
    """Share of images with GT whose top-scoring box overlaps a GT box with IoU >= ``iou_thr``."""
    hits = total = 0
    for d, g in zip(dets, gts):
        if len(g) == 0:
            continue
        total += 1
        if len(d):
            top = d.xyxy[int(np.argmax(d.scores))]
            hits += bool(np.any(iou(top[None], g)[0] >= iou_thr))
    return hits / total if total else float("nan")


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC (2010+) all-point interpolated AP from a precision/recall curve."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision(dets: list[Detections], gts: list[np.ndarray], iou_thr: float = 0.5) -> float:
    """Box AP at ``iou_thr`` over all images (images without GT contribute false positives only)."""
    n_gt = sum(len(g) for g in gts)
    if n_gt == 0:
        return float("nan")
    img_idx = np.concatenate([np.full(len(d), i) for i, d in enumerate(dets)] + [np.zeros(0, int)])
    scores = np.concatenate([d.scores for d in dets] + [np.zeros(0, np.float32)])
    boxes = np.concatenate([d.xyxy for d in dets] + [np.zeros((0, 4), np.float32)])
    order = np.argsort(-scores, kind="mergesort")
    used = [np.zeros(len(g), bool) for g in gts]
    tp = np.zeros(len(order))
    for k, j in enumerate(order):
        g = gts[img_idx[j]]
        if len(g) == 0:
            continue
        ov = iou(boxes[j][None], g)[0]
        best = int(np.argmax(ov))
        if ov[best] >= iou_thr and not used[img_idx[j]][best]:
            used[img_idx[j]][best] = True
            tp[k] = 1
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision)


def bootstrap_mean_ci(values: list[float], level: float = 0.9, resamples: int = 10000,
                      seed: int = 0) -> tuple[float, float] | None:
    """A percentile bootstrap interval at ``level`` for the mean of ``values`` (per-clip recalls):
    the clips are resampled with replacement, so that a mean over a handful of clips shows how far
    one clip can move it. None for fewer than two values. Seeded: a report is reproducible."""
    x = np.asarray(values, np.float64)
    if len(x) < 2:
        return None
    means = np.random.default_rng(seed).choice(x, size=(resamples, len(x))).mean(axis=1)
    tail = (1.0 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))
