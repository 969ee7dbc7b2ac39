"""Zones and exclusion masks on the CAM grid.

Polygons are given in fractions of the frame, so one config fits any resolution. They are
rasterised once per CAM grid into per-cell coverage weights (supersampled, so a polygon edge
through a cell counts the cell's covered fraction).

An exclusion mask removes its cells' contribution before anything is decided: the person
probability is recomputed with the model's own pooling (``meta.pooling``: global average, or
the top-k mean) over the kept cells only (the CAM is the per-cell class score, so pooling it
plus the dense bias gives the logits), and the CAM for boxes has the masked cells zeroed.
A zone's person score is the person probability times the share of the CAM's mass inside
the zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from .cam import pool_probs
from .meta import ModelMeta

Polygon = Sequence[Sequence[float]]

_SUPERSAMPLE = 16  # sub-cells per cell side when rasterising a polygon


def coverage(polygons: Sequence[Polygon], grid_h: int, grid_w: int) -> np.ndarray:
    """Fraction ``(grid_h, grid_w)`` in [0, 1] of each grid cell covered by the union of ``polygons``."""
    h, w = grid_h * _SUPERSAMPLE, grid_w * _SUPERSAMPLE
    # Sub-pixel centres tested against each polygon (even-odd rule): exact at cell borders,
    # where a filled raster would also paint the pixels an edge only touches.
    ys, xs = np.mgrid[0:h, 0:w]
    px, py = (xs + 0.5) / w, (ys + 0.5) / h
    inside_any = np.zeros((h, w), bool)
    for poly in polygons:
        pts = np.asarray(poly, np.float64)
        inside = np.zeros((h, w), bool)
        for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0)):
            if y1 == y2:
                continue
            crosses = (y1 > py) != (y2 > py)
            x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (px < x_at)
        inside_any |= inside
    img = inside_any
    return cv2.resize(img.astype(np.float32), (grid_w, grid_h), interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=32)
def _cached(polys: tuple, grid_h: int, grid_w: int) -> np.ndarray:
    out = coverage([list(p) for p in polys], grid_h, grid_w)
    out.setflags(write=False)
    return out


def keep_weights(masks: Sequence[Polygon], grid_h: int, grid_w: int) -> np.ndarray | None:
    """Per-cell weight that survives the exclusion ``masks`` (1 = untouched), or None without masks."""
    if not masks:
        return None
    return 1.0 - _cached(_frozen(masks), grid_h, grid_w)


def masked_probs(maps: np.ndarray, meta: ModelMeta, keep: np.ndarray) -> np.ndarray:
    """Class probabilities of one frame's conv ``maps (h, w, C)`` pooled over the cells an
    exclusion mask keeps (``keep``, per-cell weights), the way the model pools (:func:`cam.pool_probs`)."""
    kernel, bias = meta.pool_weights()
    return pool_probs(maps[None], kernel, bias, meta.pooling, meta.topk_share, keep)[0]


def zone_scores(cam: np.ndarray, person_prob: float, zones: dict[str, Polygon]) -> dict[str, float]:
    """Each zone's person score: ``person_prob`` times the share of ``cam``'s mass inside the zone."""
    if not zones:
        return {}
    total = float(cam.sum())
    out = {}
    for name, poly in zones.items():
        inside = float((cam * _cached(_frozen([poly]), *cam.shape)).sum())
        out[name] = person_prob * inside / total if total > 0 else 0.0
    return out


def _frozen(polys: Sequence[Polygon]) -> tuple:
    return tuple(tuple(tuple(float(v) for v in pt) for pt in poly) for poly in polys)
