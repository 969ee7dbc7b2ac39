"""Person-erased twins: one real scene with its persons and without them.

A GAP classifier learns whatever separates its classes. When the person images come from
scene kinds (CCTV, streets) that the person-free images under-represent, "street scene"
separates them as well as "person" does, and the CAM of its false alarms sits on posts,
signs and wheels. A twin pair removes that cue: the persons of a real training image (boxed
by the offline teacher, :class:`.teacher.YoloTeacher`) are covered with patches of the same
image's person-free background, which gives a negative of the *same* scene. So that a pasted
patch carries no label, the positive twin gets patches of the same sizes pasted on
person-free places.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Boxer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TwinRule:
    """When an image gets twins, and how its persons are covered."""

    sure: float = 0.35  # the image needs one person box at least this confident
    erase_from: float = 0.05  # every box from this confidence on is covered (missed persons are the risk)
    margin: float = 0.12  # boxes grow by this share of their size on each side (limbs, shadows)
    max_boxes: int = 8  # more boxes: a crowd, where the teacher misses persons
    max_cover: float = 0.45  # covered share of the image; above it the scene itself is gone
    tries: int = 60  # random places tried for each patch


def _grow(boxes: np.ndarray, margin: float, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    out = np.stack([np.floor(x0 - mx), np.floor(y0 - my), np.ceil(x1 + mx), np.ceil(y1 + my)], 1)
    return np.clip(out, 0, [w, h, w, h]).astype(int)


def _integral(mask: np.ndarray) -> np.ndarray:
    ii = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    ii[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return ii


def _free_place(ii: np.ndarray, bw: int, bh: int, near_y: int, rng: np.random.Generator, tries: int
                ) -> tuple[int, int] | None:
    """Top-left of a ``bw`` x ``bh`` rectangle that misses every busy pixel; the first half of the
    tries stay near ``near_y`` (same distance from the camera, so the same scale of texture)."""
    h, w = ii.shape[0] - 1, ii.shape[1] - 1
    if bw > w or bh > h:
        return None
    for i in range(tries):
        if i < tries // 2:
            y = int(np.clip(near_y + rng.integers(-bh // 4, bh // 4 + 1), 0, h - bh))
        else:
            y = int(rng.integers(0, h - bh + 1))
        x = int(rng.integers(0, w - bw + 1))
        if ii[y + bh, x + bw] - ii[y, x + bw] - ii[y + bh, x] + ii[y, x] == 0:
            return x, y
    return None


def _feather(bh: int, bw: int) -> np.ndarray:
    """A rectangular alpha ``(bh, bw, 1)`` with soft edges, so no hard seam marks a patch."""
    f = max(2, min(bw, bh) // 10)  # about the margin: the person's own edge stays covered
    ry = np.minimum(np.arange(bh) + 1, np.arange(bh)[::-1] + 1) / f
    rx = np.minimum(np.arange(bw) + 1, np.arange(bw)[::-1] + 1) / f
    return np.minimum(np.minimum.outer(ry, rx), 1.0)[..., None].astype(np.float32)


def _paste(dst: np.ndarray, src: np.ndarray, s: tuple[int, int], d: tuple[int, int], bw: int, bh: int
           ) -> None:
    a = _feather(bh, bw)
    patch = src[s[1] : s[1] + bh, s[0] : s[0] + bw].astype(np.float32)
    region = dst[d[1] : d[1] + bh, d[0] : d[0] + bw].astype(np.float32)
    dst[d[1] : d[1] + bh, d[0] : d[0] + bw] = (a * patch + (1 - a) * region).astype(np.uint8)


def make_twins(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, rule: TwinRule | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(person twin, person-free twin)`` of an image showing persons, or None when its
    persons cannot be covered safely. ``boxes`` ``(K, 5)``: x0, y0, x1, y1, confidence.

    The person-free twin has every box at or above ``rule.erase_from`` (grown by
    ``rule.margin``) covered by a same-sized patch of the image taken where no box is; the
    person twin has the same number of same-sized patches pasted where no box is."""
    rule = rule or TwinRule()
    if not len(boxes) or float(boxes[:, 4].max()) < rule.sure:
        return None
    boxes = boxes[boxes[:, 4] >= rule.erase_from]
    if len(boxes) > rule.max_boxes:
        return None
    h, w = img.shape[:2]
    grown = _grow(boxes, rule.margin, (h, w))
    busy = np.zeros((h, w), bool)
    # uniform rows and columns are the margins of an image fitted to the canvas: no patch source
    busy[(img == img[:, :1]).all(axis=(1, 2))] = True
    busy[:, (img == img[:1]).all(axis=(0, 2))] = True
    margins = float(busy.mean())
    for x0, y0, x1, y1 in grown:
        busy[y0:y1, x0:x1] = True
    if busy.mean() > rule.max_cover + margins:
        return None
    ii = _integral(busy)
    negative, positive = img.copy(), img.copy()
    for x0, y0, x1, y1 in grown:
        bw, bh = int(x1 - x0), int(y1 - y0)
        if bw < 2 or bh < 2:
            continue
        src = _free_place(ii, bw, bh, int(y0), rng, rule.tries)
        decoy_src = _free_place(ii, bw, bh, int(y0), rng, rule.tries)
        decoy_dst = _free_place(ii, bw, bh, int(y0), rng, rule.tries)
        if src is None or decoy_src is None or decoy_dst is None:
            return None
        _paste(negative, img, src, (int(x0), int(y0)), bw, bh)
        _paste(positive, img, decoy_src, decoy_dst, bw, bh)
    return positive, negative


class CachedBoxer:
    """The teacher's person boxes of an image, kept by the image's hash in a JSON file, so a
    second training run over the same images does not run the teacher again."""

    def __init__(self, teacher: Boxer, cache: str | Path | None = None) -> None:
        self._teacher = teacher
        self._path = Path(cache) if cache else None
        self._boxes: dict[str, list[list[float]]] = {}
        if self._path and self._path.is_file():
            self._boxes = json.loads(self._path.read_text())
        self.computed = 0

    def __call__(self, img: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()
        if key not in self._boxes:
            self._boxes[key] = np.round(self._teacher(img), 3).tolist()
            self.computed += 1
        return np.array(self._boxes[key], np.float32).reshape(-1, 5)

    def save(self) -> None:
        """Write the cache (a new file next to it, then renamed, so a crash leaves the old one)."""
        if self._path:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._boxes))
            tmp.replace(self._path)
