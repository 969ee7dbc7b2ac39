"""Class Activation Maps (Zhou et al., CVPR 2016): the maps and the boxes drawn from them.

Drawing them on frames is :mod:`gapstream.annotate`'s job."""

from __future__ import annotations

import functools
import heapq

import cv2
import numpy as np

from .config import PostConfig
from .detections import Detections

#: The paper's box rule keeps the pixels above 20% of the CAM's maximum.
PAPER_THRESHOLD = 0.2


def cam_batch(maps: np.ndarray, kernel: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """CAMs of ``classes (N,)`` from ``maps (N, h, w, C)`` and dense ``kernel (C, K)``.

    One matrix product for the whole batch; ReLU, then each map is scaled to [0, 1]
    by its maximum (an all-zero map stays zero).
    """
    n, h, w, c = maps.shape
    scores = maps.reshape(n, h * w, c) @ kernel  # (N, hw, K)
    cams = scores[np.arange(n), :, np.asarray(classes)].reshape(n, h, w)
    np.maximum(cams, 0, out=cams)
    peak = cams.reshape(n, -1).max(axis=1)
    cams /= np.where(peak > 0, peak, 1.0)[:, None, None]
    return cams.astype(np.float32, copy=False)


def pool_probs(maps: np.ndarray, kernel: np.ndarray, bias: np.ndarray, pooling: str = "gap",
               share: float = 0.05, keep: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities ``(N, K)`` of conv ``maps (N, h, w, C)``, pooled the way the model's
    graph pools (``meta.pooling``), from the per-cell class scores ``maps @ kernel``.

    ``gap``: GAP is linear, so the logits are the mean over cells of the scores (weighted by
    ``keep``, an exclusion mask's per-cell weights, over the whole grid so that a person in the
    kept area scores as it would without the mask) plus ``bias``. ``topk``: per class the mean of
    the ``k`` highest scores (``k`` = ``share`` of the whole grid) among the cells ``keep`` leaves
    at least half uncovered, plus ``bias``. ``keep`` of shape ``(h, w, K)`` has weights per class.
    """
    if keep is not None and keep.ndim == 3:  # per class: pool each class over its own cells
        cols = [pool_logits(maps, kernel[:, j : j + 1], pooling, share, keep[:, :, j])
                for j in range(kernel.shape[1])]
        return _softmax(np.concatenate(cols, axis=1) + bias)
    return _softmax(pool_logits(maps, kernel, pooling, share, keep) + bias)


def pool_logits(maps: np.ndarray, kernel: np.ndarray, pooling: str, share: float,
                keep: np.ndarray | None) -> np.ndarray:
    """The pooled class scores ``(N, K)`` before the bias (see :func:`pool_probs`)."""
    n, h, w, c = maps.shape
    scores = maps.reshape(n, h * w, c) @ kernel  # (N, hw, K)
    if pooling == "topk":
        if keep is not None:
            scores = scores[:, keep.reshape(-1) >= 0.5]
        k = min(max(1, round(share * h * w)), scores.shape[1])
        pooled = -np.sort(-scores, axis=1)[:, :k].mean(axis=1) if k else np.zeros((n, kernel.shape[1]))
    else:
        weights = np.ones(h * w, np.float32) if keep is None else keep.reshape(-1).astype(np.float32)
        pooled = (scores * weights[None, :, None]).sum(axis=1) / (h * w)
    return pooled


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def upsample(cam: np.ndarray, width: int, height: int, cubic: bool = False) -> np.ndarray:
    """Resize a low-resolution CAM to the frame size."""
    interp = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    out = cv2.resize(cam, (width, height), interpolation=interp)
    return np.clip(out, 0.0, 1.0, out=out)


def cam_peaks(cam: np.ndarray, floor: float) -> np.ndarray:
    """Local maxima ``(K, 2)`` as (row, col) of a low-resolution CAM that reach ``floor * max``.

    A cell is a peak when no 8-neighbour is higher; plateaus count once (their first cell).
    """
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return np.zeros((0, 2), np.int64)
    local = cv2.dilate(cam, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    seeds = ((cam >= local) & (cam >= floor * peak)).astype(np.uint8)
    count, labels = cv2.connectedComponents(seeds, connectivity=8)
    return np.array([np.argwhere(labels == i)[0] for i in range(1, count)], np.int64).reshape(-1, 2)


def split_by_peaks(cam: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Cell labels ``1..K``: every cell of a low-resolution CAM goes to one of the ``seeds (K, 2)``.

    A priority flood from the peaks, highest CAM first (the watershed of ``-cam``): two
    persons side by side make two peaks joined by a lower saddle, and the floods meet there.
    Plain Python lists over flat cell indices and cached neighbour lists: numpy's per-element
    access made the flood about 4 ms on the 22x40 cells of a 1280x720 frame at long side 640; now
    about 0.6 ms (stop 30).
    """
    h, w = cam.shape
    values = cam.ravel().tolist()
    labels = [0] * (h * w)
    around = _neighbours(h, w)
    heap: list[tuple[float, int, int]] = []
    for k, (r, c) in enumerate(seeds.tolist(), start=1):
        i = r * w + c
        labels[i] = k
        heapq.heappush(heap, (-values[i], i, k))
    while heap:
        _, i, k = heapq.heappop(heap)
        for j in around[i]:
            if labels[j] == 0:
                labels[j] = k
                heapq.heappush(heap, (-values[j], j, k))
    return np.array(labels, np.int32).reshape(h, w)


@functools.lru_cache(maxsize=8)
def _neighbours(h: int, w: int) -> tuple[tuple[int, ...], ...]:
    """Flat indices of each cell's 8-neighbours in an ``h x w`` grid, in row-major order."""
    return tuple(
        tuple(rr * w + cc for rr in range(max(0, r - 1), min(h, r + 2))
              for cc in range(max(0, c - 1), min(w, c + 2)) if (rr, cc) != (r, c))
        for r in range(h) for c in range(w))


def merge_shallow_splits(cam: np.ndarray, labels: np.ndarray, saddle: float) -> np.ndarray:
    """Merge touching regions of :func:`split_by_peaks` whose valley is shallow.

    Two regions stay apart only when their saddle (the highest of the lower CAM values of their
    touching cell pairs) is at most ``saddle`` times the lower of their peaks: two persons leave a
    valley between their CAMs, while the head and legs of one person leave a shallow dip.
    Pairs are merged from the highest saddle down, the lower peak's region into the other
    (persistence), and the labels come back as ``1..K``. ``saddle`` 1 merges nothing.
    """
    count = int(labels.max())
    if count <= 1 or saddle >= 1.0:
        return labels
    peaks = _per_label(labels, cam, count + 1, mass=False)
    best: dict[tuple[int, int], float] = {}
    h, w = cam.shape
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):  # the flood's 8-neighbours, each pair once
        c0, c1 = max(0, -dc), w - max(0, dc)
        a, b = labels[: h - dr, c0:c1], labels[dr:, c0 + dc : c1 + dc]
        low = np.minimum(cam[: h - dr, c0:c1], cam[dr:, c0 + dc : c1 + dc])
        edge = a != b
        for i, j, v in zip(a[edge].tolist(), b[edge].tolist(), low[edge].tolist()):
            key = (min(i, j), max(i, j))
            if v > best.get(key, -np.inf):
                best[key] = v
    parent = list(range(count + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (i, j), v in sorted(best.items(), key=lambda kv: -kv[1]):
        ri, rj = root(i), root(j)
        if ri != rj and v > saddle * min(peaks[ri], peaks[rj]):
            low, high = (ri, rj) if peaks[ri] < peaks[rj] else (rj, ri)
            parent[low] = high
    roots = np.array([root(i) for i in range(count + 1)])
    _, compact = np.unique(roots[1:], return_inverse=True)
    lut = np.concatenate([[0], compact + 1]).astype(np.int32)
    return lut[labels]


def boxes_from_cam(
    cam: np.ndarray, threshold: float = PAPER_THRESHOLD, min_area: float = 0.0, score_scale: float = 1.0,
    regions: np.ndarray | None = None, score: str = "peak",
) -> Detections:
    """The paper's rule: keep pixels above ``threshold * max``; one box per connected component.

    ``cam`` is at the resolution boxes are wanted in; ``min_area`` is a fraction of the
    image area below which components are dropped. With ``regions`` (a label image of
    ``cam``'s size, one label per CAM peak, see :func:`split_by_peaks`), the kept pixels are
    split by region first, so a group of persons gives a box each. A box's score is its
    component's peak CAM value (``score="peak"``) or its CAM mass, the sum over its pixels
    (``"mass"``), relative to the best box's, times ``score_scale`` (usually the person
    probability).
    """
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return Detections.empty()
    mask = (cam >= threshold * peak).astype(np.uint8)
    if regions is not None and regions.max() > 1:
        labels, stats = _components_by_region(mask, regions)
    else:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    count = len(stats)
    if count <= 1:
        return Detections.empty()
    area_min = min_area * cam.shape[0] * cam.shape[1]
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= max(area_min, 1)]
    if not keep:
        return Detections.empty()
    values = _per_label(labels, cam, count, score == "mass")
    x, y, w, h = (stats[keep, k] for k in (0, 1, 2, 3))
    xyxy = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    best = peak if score != "mass" else float(values[keep].max())
    scores = (values[keep] / best * score_scale).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return Detections(xyxy[order], scores[order])


def _per_label(labels: np.ndarray, cam: np.ndarray, count: int, mass: bool) -> np.ndarray:
    """The CAM's sum (``mass``) or maximum over each label ``0..count-1``, in one pass over the
    labelled pixels (``ufunc.at`` would take milliseconds on a 448-px CAM)."""
    flat = labels.ravel()
    inside = flat > 0
    lab, val = flat[inside], cam.ravel()[inside].astype(np.float64)
    if mass:
        return np.bincount(lab, weights=val, minlength=count)[:count]
    out = np.zeros(count, np.float64)
    if len(lab):
        order = np.argsort(lab, kind="stable")
        lab, val = lab[order], val[order]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        out[lab[starts]] = np.maximum.reduceat(val, starts)
    return out


def _components_by_region(mask: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and ``cv2.connectedComponentsWithStats``-style stats of the connected components of
    ``mask`` within each region: one peak's region may hold parts that do not touch (two persons
    whose CAMs share a basin), and one box around them all would fit neither."""
    labels = np.zeros(mask.shape, np.int32)
    stats = [np.zeros(5, np.int32)]
    for k in range(1, int(regions.max()) + 1):
        part = ((regions == k) & (mask > 0)).astype(np.uint8)
        n, lab, st, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
        if n > 1:
            labels[lab > 0] = lab[lab > 0] + len(stats) - 1
            stats.extend(st[1:])
    return labels, np.array(stats, np.int32).reshape(-1, 5)


def scale_boxes(det: Detections, sx: float, sy: float) -> Detections:
    """Scale box coordinates, e.g. from CAM resolution to frame resolution."""
    if not len(det):
        return det
    return Detections(det.xyxy * np.array([sx, sy, sx, sy], np.float32), det.scores)


def decides_person(probs: np.ndarray, person_index: int, cfg: PostConfig) -> bool:
    """The decision of :func:`localize`: the person is the predicted class and its probability
    reaches ``cfg.score_threshold`` (resolved)."""
    assert cfg.score_threshold is not None
    return int(np.argmax(probs)) == person_index and float(probs[person_index]) >= cfg.score_threshold


def localize(cam: np.ndarray, probs: np.ndarray, person_index: int, width: int, height: int,
             cfg: PostConfig) -> tuple[bool, Detections]:
    """The one localisation rule, used at run time and in evaluation: (person?, boxes in frame pixels).

    ``cam`` is the low-resolution CAM of the predicted class. A frame is a person frame when
    that class is the person and its probability reaches ``cfg.score_threshold``; only then
    are boxes found, on the CAM upsampled to at most ``cfg.box_resolution`` on its longer
    side and scaled to the frame (the same components at a fraction of the cost of full
    size). ``cfg.threshold`` and ``cfg.score_threshold`` must be resolved: the model's own come
    from its metadata (pipeline.resolve_post).
    """
    assert cfg.threshold is not None
    if not decides_person(probs, person_index, cfg):
        return False, Detections.empty()
    prob = float(probs[person_index])
    s = min(1.0, cfg.box_resolution / max(width, height))
    bw, bh = max(1, round(width * s)), max(1, round(height * s))
    regions = None
    if cfg.split_peaks:
        seeds = cam_peaks(cam, cfg.peak_floor)
        if len(seeds) > 1:  # split on the cells, then carry the cell labels to the box resolution
            cells = merge_shallow_splits(cam, split_by_peaks(cam, seeds), cfg.split_saddle)
            regions = cv2.resize(cells, (bw, bh), interpolation=cv2.INTER_NEAREST)
    det = boxes_from_cam(upsample(cam, bw, bh, cfg.cubic), cfg.threshold, cfg.min_area, prob, regions,
                         cfg.box_score)
    det = scale_boxes(det, width / bw, height / bh)
    if cfg.box_scale and tuple(cfg.box_scale) != (1.0, 1.0):
        det = resize_boxes(det, cfg.box_scale[0], cfg.box_scale[1], width, height)
    return True, det


def resize_boxes(det: Detections, fx: float, fy: float, width: int, height: int) -> Detections:
    """Scale each box's width by ``fx`` and height by ``fy`` about its centre, clipped to the frame."""
    if not len(det):
        return det
    c = (det.xyxy[:, :2] + det.xyxy[:, 2:]) / 2
    half = (det.xyxy[:, 2:] - det.xyxy[:, :2]) / 2 * np.array([fx, fy], np.float32)
    xyxy = np.concatenate([c - half, c + half], axis=1)
    np.clip(xyxy, 0, np.array([width, height, width, height], np.float32), out=xyxy)
    return Detections(xyxy.astype(np.float32), det.scores)
