"""Build an INRIA-layout dataset from the parts of INRIA Person that could be obtained.

When the full-size positive images and their annotations are not available but the
96x160 person crops (``96X160H96/Train/pos``) and the negative images are, this writes a
dataset in INRIA's own layout (``Train|Test/pos|neg|annotations``) in which every positive
image is a real negative scene with one or two real person crops pasted in (feathered
edges, random position and scale) and a PASCAL annotation for each pasted person. Negative
images get pasted patches of other negative scenes with the same feathering, so that paste
seams carry no class information. Crops are split by source image, so no person seen in
training appears in the test set.

    python -m gapstream.training.composite --inria data/INRIAPerson \
        --out data/INRIAPerson-composite [--paired]
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from ..media import IMAGE_EXTS
from .inria import format_annotation

# The standard 64x128 person window sits 16 px inside each 96x160 crop.
CROP_BOX = (16, 16, 80, 144)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"folder {folder} not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def _feather(h: int, w: int, edge: int) -> np.ndarray:
    mask = np.zeros((h, w), np.float32)
    mask[edge : h - edge, edge : w - edge] = 1
    k = 2 * edge + 1
    return cv2.GaussianBlur(mask, (k, k), edge / 2)[..., None]


def _paste(scene: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h, w = patch.shape[:2]
    mask = _feather(h, w, max(2, min(h, w) // 12))
    roi = scene[y : y + h, x : x + w].astype(np.float32)
    scene[y : y + h, x : x + w] = (mask * patch + (1 - mask) * roi).astype(np.uint8)


def _scene(path: Path, height: int) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise DataError(f"unreadable image {path}")
    s = height / img.shape[0]
    return cv2.resize(img, (max(int(img.shape[1] * s), height * 3 // 4), height))


def _place(rng: np.random.Generator, scene: np.ndarray, ph: int, pw: int, taken: list) -> tuple[int, int]:
    H, W = scene.shape[:2]
    for _ in range(20):
        x, y = int(rng.integers(0, W - pw + 1)), int(rng.integers(0, H - ph + 1))
        if all(x + pw <= a or a + c <= x for a, _, c, _ in taken):  # no horizontal overlap
            break
    taken.append((x, y, pw, ph))
    return x, y


def _write_split(
    rng: np.random.Generator, out: Path, split: str, crops: list[Path], backgrounds: list[Path],
    distractors: list[Path], n_pos: int, negatives: list[Path], height: int,
) -> None:
    for sub in ("pos", "neg", "annotations"):
        (out / split / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_pos):
        scene = _scene(backgrounds[i % len(backgrounds)], height)
        taken: list = []
        boxes = []
        for _ in range(1 if rng.random() < 0.6 else 2):
            crop = cv2.imread(str(crops[int(rng.integers(len(crops)))]))
            ph = int(height * rng.uniform(0.55, 1.0))  # the crop's height: person 60-100% of it
            pw = ph * crop.shape[1] // crop.shape[0]
            if pw >= scene.shape[1]:
                continue
            x, y = _place(rng, scene, ph, pw, taken)
            _paste(scene, cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_CUBIC), x, y)
            sx, sy = pw / crop.shape[1], ph / crop.shape[0]
            boxes.append((x + round(CROP_BOX[0] * sx), y + round(CROP_BOX[1] * sy),
                          x + round(CROP_BOX[2] * sx), y + round(CROP_BOX[3] * sy)))
        _add_distractors(rng, scene, distractors, int(rng.integers(0, 2)), height, taken)
        name = f"{split}/pos/composite_{i:05d}.jpg"
        cv2.imwrite(str(out / name), scene, [cv2.IMWRITE_JPEG_QUALITY, 93])
        (out / split / "annotations" / f"composite_{i:05d}.txt").write_text(
            format_annotation(name, scene.shape[1], scene.shape[0], boxes))
    for path in negatives:
        scene = _scene(path, height)
        _add_distractors(rng, scene, distractors, int(rng.integers(1, 3)), height, [])
        cv2.imwrite(str(out / split / "neg" / f"{path.stem}.jpg"), scene, [cv2.IMWRITE_JPEG_QUALITY, 93])


def _add_distractors(rng: np.random.Generator, scene: np.ndarray, pool: list[Path], n: int,
                     height: int, taken: list) -> None:
    for _ in range(n):
        src = _scene(pool[int(rng.integers(len(pool)))], height)
        ph = int(height * rng.uniform(0.55, 1.0))
        pw = ph * 96 // 160
        if pw >= scene.shape[1] or pw >= src.shape[1]:
            continue
        sx = int(rng.integers(0, src.shape[1] - pw + 1))
        x, y = _place(rng, scene, ph, pw, taken)
        rows = slice(height - ph, height) if rng.random() < 0.5 else slice(0, ph)
        _paste(scene, src[rows, sx : sx + pw], x, y)


def build(inria: Path, out: Path, seed: int = 0, test_fraction: float = 0.3, height: int = 480,
          n_train_pos: int = 616, n_test_pos: int = 288, n_test_neg: int = 227,
          paired: bool = False) -> dict[str, int]:
    """Write the composite dataset; returns the image count per split folder.

    ``paired``: every training scene appears twice, once with persons and once with only
    distractors, so that the scene itself carries no class information (and all training
    crops get used); the test split is built the same way either way.
    """
    crops = _images(inria / "96X160H96" / "Train" / "pos")
    train_neg = _images(inria / "Train" / "neg")
    test_neg = _images(inria / "Test" / "neg")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Path]] = defaultdict(list)
    for c in crops:  # crop001001a.png, crop001001b.png: persons of one source image
        groups[re.sub(r"[a-z]?$", "", c.stem)].append(c)
    keys = sorted(groups)
    rng.shuffle(keys)
    n_test = int(len(keys) * test_fraction)
    test_crops = [c for k in keys[:n_test] for c in groups[k]]
    train_crops = [c for k in keys[n_test:] for c in groups[k]]
    train_neg = list(rng.permutation(train_neg))
    test_neg = list(rng.permutation(test_neg))
    # Train: half the negative scenes are backgrounds for positives, half stay negatives
    # (paired: all scenes are both).
    half = len(train_neg) // 2
    backgrounds, negatives = (train_neg, train_neg) if paired else (train_neg[:half], train_neg[half:])
    n_pos = len(train_neg) if paired else n_train_pos
    _write_split(rng, out, "Train", train_crops, backgrounds, backgrounds, n_pos, negatives, height)
    # Test: backgrounds and distractors come only from the scenes not used as test negatives.
    spare = test_neg[n_test_neg:]
    _write_split(rng, out, "Test", test_crops, spare, spare, n_test_pos, test_neg[:n_test_neg], height)
    counts = {f"{s}/{k}": len(_images(out / s / k)) for s in ("Train", "Test") for k in ("pos", "neg")}
    (out / "MANIFEST.txt").write_text(
        "Composite INRIA-layout dataset built by gapstream.training.composite\n"
        f"seed {seed}{', paired training scenes' if paired else ''}, crops split by source image: "
        f"{len(keys) - n_test} train groups "
        f"({len(train_crops)} crops), {n_test} test groups ({len(test_crops)} crops)\n"
        + "".join(f"{k}: {v}\n" for k, v in counts.items())
    )
    return counts


def _write_surveillance_split(out: Path, split: str, scenes: list[np.ndarray], persons: list[np.ndarray],
                              rng: np.random.Generator, n_pos: int, n_neg: int) -> None:
    from .scenes import composite, crop_cover, scene_patches

    others = scene_patches(scenes[::-1], rng)
    for sub in ("pos", "neg", "annotations"):
        (out / split / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_pos):
        img, boxes = composite(crop_cover(scenes[i % len(scenes)], rng, (1.0, 1.8)), persons, rng)
        name = f"{split}/pos/surv_{i:05d}.png"
        cv2.imwrite(str(out / name), img[..., ::-1])
        (out / split / "annotations" / f"surv_{i:05d}.txt").write_text(
            format_annotation(name, img.shape[1], img.shape[0], [tuple(round(v) for v in b) for b in boxes]))
    for i in range(n_neg):
        bg = crop_cover(scenes[(n_pos + i) % len(scenes)], rng, (1.0, 1.8))
        img = composite(bg, others, rng)[0] if i % 2 else bg
        cv2.imwrite(str(out / split / "neg" / f"surv_{i:05d}.png"), img[..., ::-1])


def build_surveillance(inria: Path, crops: Path, out: Path, seed: int = 0, n_pos: int = 300,
                       n_neg: int = 200) -> dict[str, int]:
    """INRIA-layout splits at surveillance scales: person crops pasted 1-4 per scene at 6-60 %
    of the frame height on the 256x448 canvas, negatives with same-shaped patches of other scenes.

    Test: the held-out crops (:func:`scenes.split_crops`) in INRIA Test/neg scenes, neither of
    which the scene recipe trains on. Train: training crops in Train/neg scenes, for choosing
    the box threshold on its validation part (never on Test).
    """
    from .scenes import image_files, read_rgb, split_crops

    rng = np.random.default_rng(seed)
    train_crops, test_crops = split_crops(image_files(crops))
    for split, crop_paths in (("Train", train_crops), ("Test", test_crops)):
        scenes = [s for s in (read_rgb(p) for p in image_files(inria / split / "neg")) if s is not None]
        if not scenes or not crop_paths:
            raise DataError(f"no scenes in {inria / split / 'neg'} or no crops in {crops}")
        rng.shuffle(scenes)
        persons = [c for c in (read_rgb(p) for p in crop_paths) if c is not None]
        _write_surveillance_split(out, split, scenes, persons, rng, n_pos, n_neg)
    (out / "MANIFEST.txt").write_text(
        "Surveillance-scale composite built by gapstream.training.composite --surveillance\n"
        f"seed {seed}; Train: {len(train_crops)} training crops in Train/neg scenes; "
        f"Test: {len(test_crops)} held-out crops in Test/neg scenes; {n_pos} pos + {n_neg} neg per split\n")
    return {f"{s}/{k}": n for s in ("Train", "Test") for k, n in (("pos", n_pos), ("neg", n_neg))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inria", type=Path, required=True, help="INRIAPerson root with 96X160H96 and neg")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paired", action="store_true",
                   help="use every training scene both with and without persons")
    p.add_argument("--surveillance", action="store_true",
                   help="splits at surveillance scales (test: held-out crops in Test/neg scenes)")
    p.add_argument("--crops", type=Path, help="96x160 person crops (default INRIA/96X160H96/Train/pos)")
    args = p.parse_args(argv)
    crops = args.crops or args.inria / "96X160H96" / "Train" / "pos"
    counts = (build_surveillance(args.inria, crops, args.out, args.seed)
              if args.surveillance else build(args.inria, args.out, args.seed, paired=args.paired))
    for k, v in counts.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
