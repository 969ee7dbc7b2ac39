"""INRIA Person in the dataset's own layout: file lists, labels, balancing, GT boxes, image cache.

Layout (``ROOT`` may also be the folder that contains ``INRIAPerson/``)::

    ROOT/Train/pos  ROOT/Train/neg  ROOT/Train/annotations  [ROOT/Train/pos.lst neg.lst annotations.lst]
    ROOT/Test/pos   ROOT/Test/neg   ROOT/Test/annotations   [ROOT/Test/pos.lst  neg.lst annotations.lst]

Annotations are PASCAL v1 text files, one per positive image, with lines such as::

    Image filename : "Test/pos/crop_000001.png"
    Image size (X x Y x C) : 640 x 480 x 3
    Bounding box for object 1 "PASperson" (Xmin, Ymin) - (Xmax, Ymax) : (193, 82) - (278, 346)

Classes are balanced as in the reference: within each of Train and Test excess negatives
are dropped at random (never positives); a stratified ``val_fraction`` (default 0.3) of
the balanced Train set becomes the validation set.
Everything uses one fixed seed. This module needs only numpy and OpenCV.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from ..media import IMAGE_EXTS

log = logging.getLogger(__name__)

_BOX_RE = re.compile(
    r'Bounding box for object\s+(\d+)\s+"([^"]*)"\s*\(Xmin,\s*Ymin\)\s*-\s*\(Xmax,\s*Ymax\)\s*:\s*'
    r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)\s*-\s*\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)"
)
_FILE_RE = re.compile(r'Image filename\s*:\s*"([^"]+)"')
_SIZE_RE = re.compile(r"Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)")


@dataclass
class Annotation:
    """GT of one image: person boxes ``(M, 4)`` xyxy in the annotated image's pixels."""

    filename: str
    boxes: np.ndarray
    size: tuple[int, int] | None = None  # (width, height) as annotated
    labels: list[str] = field(default_factory=list)


@dataclass
class Split:
    """Image files with labels (1 = person, 0 = no person)."""

    paths: list[Path]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        pos = int(np.sum(self.labels == 1))
        return {"total": len(self), "pos": pos, "neg": len(self) - pos}


@dataclass
class InriaData:
    """Balanced splits plus GT boxes of the test positives (keyed by image path string)."""

    root: Path
    train: Split | None
    val: Split | None
    test: Split | None
    test_boxes: dict[str, Annotation]
    raw_counts: dict[str, int]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {name: s.counts() for name, s in (("train", self.train), ("val", self.val),
                                                ("test", self.test)) if s is not None}
        out["raw"] = dict(self.raw_counts)
        if self.test is not None:
            out["test"]["pos_with_boxes"] = sum(str(p) in self.test_boxes for p, y in
                                                zip(self.test.paths, self.test.labels) if y == 1)
        return out


def parse_annotation(text: str, filename: str = "") -> Annotation:
    """Parse one PASCAL v1 annotation text (INRIA Person's format)."""
    m = _FILE_RE.search(text)
    fname = m.group(1) if m else filename
    s = _SIZE_RE.search(text)
    size = (int(s.group(1)), int(s.group(2))) if s else None
    boxes, labels = [], []
    for b in _BOX_RE.finditer(text):
        x1, y1, x2, y2 = (float(b.group(i)) for i in range(3, 7))
        boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
        labels.append(b.group(2))
    arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Annotation(fname, arr, size, labels)


def format_annotation(filename: str, width: int, height: int, boxes: list) -> str:
    """PASCAL v1 annotation text (INRIA Person's format) for person ``boxes`` in xyxy pixels."""
    lines = [
        "# PASCAL Annotation Version 1.00",
        f'Image filename : "{filename}"',
        f"Image size (X x Y x C) : {width} x {height} x 3",
        f"Objects with ground truth : {len(boxes)} {{ " + " ".join('"PASperson"' for _ in boxes) + " }",
    ]
    for i, (x1, y1, x2, y2) in enumerate(boxes, 1):
        lines.append(f'Bounding box for object {i} "PASperson" (Xmin, Ymin) - (Xmax, Ymax) : '
                     f"({x1}, {y1}) - ({x2}, {y2})")
    return "\n".join(lines) + "\n"


def read_annotation(path: str | Path) -> Annotation:
    data = Path(path).read_bytes().decode("latin-1")
    return parse_annotation(data, Path(path).name)


def find_root(root: str | Path) -> Path:
    """The folder holding ``Train``/``Test``: ``root`` itself or ``root/INRIAPerson``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"INRIA Person folder {root} not found")
    for cand in (root, root / "INRIAPerson", root / "inriaperson"):
        if (cand / "Train").is_dir() or (cand / "Test").is_dir():
            return cand
    raise DataError(f"{root} is not INRIA Person: folder {root / 'Train'} "
                    f"(or {root / 'INRIAPerson' / 'Train'}) not found")


def _require(folder: Path) -> Path:
    if not folder.is_dir():
        raise DataError(f"INRIA Person folder {folder} not found")
    return folder


def _from_list(root: Path, lst: Path) -> list[Path]:
    out = []
    for line in lst.read_bytes().decode("latin-1").splitlines():
        line = line.strip()
        if not line:
            continue
        for cand in (root / line, lst.parent / Path(line).name, lst.parent / Path(line).parent.name /
                     Path(line).name):
            if cand.is_file():
                out.append(cand)
                break
    return out


def list_images(root: Path, split: str, kind: str) -> list[Path]:
    """Images of ``root/split/kind`` (``kind`` is pos or neg), via ``kind.lst`` when present."""
    folder = _require(root / split / kind)
    lst = root / split / f"{kind}.lst"
    files: list[Path] = []
    if lst.is_file():
        files = _from_list(root, lst)
        if not files:
            log.warning("%s lists no existing file; using the files in %s", lst, folder)
    if not files:
        files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    # Unique and sorted so that the seeded shuffles are reproducible across machines.
    return sorted(set(files), key=lambda p: p.name)


def list_annotations(root: Path, split: str) -> dict[str, Annotation]:
    """Annotations of ``root/split`` keyed by image stem (empty if the folder is missing)."""
    folder = root / split / "annotations"
    if not folder.is_dir():
        return {}
    lst = root / split / "annotations.lst"
    files = _from_list(root, lst) if lst.is_file() else []
    if not files:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt")
    out = {}
    for f in files:
        ann = read_annotation(f)
        out[Path(ann.filename).stem if ann.filename else f.stem] = ann
        out.setdefault(f.stem, ann)
    return out


def _balance(pos: list[Path], neg: list[Path], rng: np.random.Generator) -> tuple[list[Path], list[Path]]:
    """Drop excess negatives at random (order kept) so that they are no more than the positives.

    Positives are never dropped (the reference kept all of them, e.g. 288 person + 227
    other images in its 515-image test split).
    """
    if len(neg) <= len(pos):
        return list(pos), list(neg)
    keep = np.sort(rng.choice(len(neg), len(pos), replace=False))
    return list(pos), [neg[i] for i in keep]


def _split(pos: list[Path], neg: list[Path]) -> Split:
    return Split(list(pos) + list(neg), np.array([1] * len(pos) + [0] * len(neg), np.int64))


def load_inria(
    root: str | Path,
    splits: tuple[str, ...] = ("train", "test"),
    val_fraction: float = 0.3,
    seed: int = 0,
    balance: bool = True,
) -> InriaData:
    """File lists, labels and test GT boxes of INRIA Person.

    ``splits`` names what is needed ("train" gives train + val, "test" gives test); a
    needed folder that is missing raises :class:`DataError` naming it.
    """
    base = find_root(root)
    rng = np.random.default_rng(seed)
    raw: dict[str, int] = {}
    train = val = test = None
    boxes: dict[str, Annotation] = {}
    if "train" in splits:
        pos, neg = list_images(base, "Train", "pos"), list_images(base, "Train", "neg")
        raw.update({"train_pos": len(pos), "train_neg": len(neg)})
        if balance:
            pos, neg = _balance(pos, neg, rng)
        vp, vn = (round(val_fraction * len(pos)), round(val_fraction * len(neg)))
        ip, ineg = rng.permutation(len(pos)), rng.permutation(len(neg))
        val = _split([pos[i] for i in sorted(ip[:vp])], [neg[i] for i in sorted(ineg[:vn])])
        train = _split([pos[i] for i in sorted(ip[vp:])], [neg[i] for i in sorted(ineg[vn:])])
        if len(train) == 0:
            raise DataError(f"no training images found under {base / 'Train'}")
    if "test" in splits:
        pos, neg = list_images(base, "Test", "pos"), list_images(base, "Test", "neg")
        raw.update({"test_pos": len(pos), "test_neg": len(neg)})
        if balance:
            pos, neg = _balance(pos, neg, rng)
        test = _split(pos, neg)
        anns = list_annotations(base, "Test")
        if not anns:
            log.warning("%s not found or empty: no localisation ground truth", base / "Test" / "annotations")
        for p in pos:
            if p.stem in anns:
                boxes[str(p)] = anns[p.stem]
        if len(test) == 0:
            raise DataError(f"no test images found under {base / 'Test'}")
    return InriaData(base, train, val, test, boxes, raw)


# ----------------------------------------------------------------------------- images


def read_rgb(path: str | Path) -> np.ndarray | None:
    """An RGB uint8 image, or None if it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _load_one(path: Path, size: int | tuple[int, int]) -> tuple[np.ndarray | None, tuple[int, int]]:
    img = read_rgb(path)
    if img is None:
        return None, (0, 0)
    h, w = img.shape[:2]
    sh, sw = _hw(size)
    # Same resize as the runtime (GapModel.preprocess): whole frame, bilinear.
    return cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR), (w, h)


def default_cache_dir() -> Path:
    return Path(os.environ.get("GAPSTREAM_CACHE", Path.home() / ".cache" / "gapstream"))


def load_images(
    paths: list[Path], size: int | tuple[int, int], cache_dir: str | Path | None = None, workers: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode and resize ``paths`` once to ``size`` (square, or (h, w)):
    ``(images (N, h, w, 3) uint8 RGB, sizes (N, 2) w/h, ok (N,))``.

    Unreadable files get ``ok = False`` (and a black image). With ``cache_dir`` the
    result is kept in an ``.npz`` keyed by the paths, their sizes/mtimes and ``size``.
    """
    key = hashlib.sha1(str(size).encode())
    for p in paths:
        st = p.stat()
        key.update(f"{p.resolve()}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    cache = Path(cache_dir) / f"images_{size}_{key.hexdigest()[:16]}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                return z["images"], z["sizes"], z["ok"]
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable cache %s", cache)
    images = np.zeros((len(paths), *_hw(size), 3), np.uint8)
    sizes = np.zeros((len(paths), 2), np.int64)
    ok = np.zeros(len(paths), bool)
    with ThreadPoolExecutor(max(1, workers)) as ex:
        for i, (img, wh) in enumerate(ex.map(lambda p: _load_one(p, size), paths)):
            if img is None:
                log.warning("cannot decode %s: skipped", paths[i])
                continue
            images[i], sizes[i], ok[i] = img, wh, True
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, sizes=sizes, ok=ok)
        tmp.replace(cache)
    return images, sizes, ok


def load_split_images(
    split: Split, size: int | tuple[int, int], cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Path]]:
    """Images, labels, original sizes and paths of a split, without undecodable files."""
    images, sizes, ok = load_images(split.paths, size, cache_dir)
    paths = [p for p, k in zip(split.paths, ok) if k]
    return images[ok], split.labels[ok], sizes[ok], paths
