"""Training scenes on one canvas (256x448, 16:9): real clip frames, composites and real photos.

Sources (each image gets an image-level label, which is all GAP training needs):

* frames of the train split of labelled clips (:mod:`.clips`), about 8 a second, skipping
  frames near a change of label; the last 20 % of each clip is held out for validation;
* INRIA negatives, as scenes and as backgrounds for composites;
* composites: INRIA person crops pasted at surveillance scales (6-60 % of the frame height),
  1-4 per scene, lower in the frame when larger, partly occluded, toned towards the local
  background with a person-shaped soft mask; every background appears once with persons
  and once with same-shaped patches of other scenes, so the blending itself is no cue;
* folders of real photos: ``external/pos/<source>/`` and ``external/neg/<source>/``;
* optionally, person-erased twins of the real person images (:mod:`.twins`): the same scene
  without its persons, as a negative.

Camera-like degradations (blur, grayscale/IR, low light, sensor noise, JPEG artefacts) are
applied to training images, never to validation images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..media import IMAGE_EXTS
from .clips import folders, load_clips, sample_frames
from .twins import Boxer, TwinRule, make_twins

log = logging.getLogger(__name__)

CANVAS = (256, 448)  # (h, w)
#: Person box inside an INRIA 96x160 "H96" crop (the person is 96 px tall, centred).
CROP_PERSON = (16 / 96, 32 / 160, 80 / 96, 128 / 160)


@dataclass
class SceneSet:
    """Images ``(N, h, w, 3)`` uint8, labels ``(N,)`` and a source tag per image."""

    x: np.ndarray
    y: np.ndarray
    source: np.ndarray

    def counts(self) -> dict[str, list[int]]:
        """``{source: [no_person, person]}``."""
        out: dict[str, list[int]] = {}
        for s, y in zip(self.source.tolist(), self.y.tolist()):
            out.setdefault(s, [0, 0])[int(y)] += 1
        return out


def read_rgb(path: str | Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else np.ascontiguousarray(img[..., ::-1])


def image_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)


def fit(img: np.ndarray, rng: np.random.Generator, hw: tuple[int, int] = CANVAS) -> np.ndarray:
    """The whole image, aspect kept, on the canvas; the margins take its mean colour."""
    h, w = hw
    ih, iw = img.shape[:2]
    s = min(h / ih, w / iw)
    nh, nw = max(1, round(ih * s)), max(1, round(iw * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if (nh, nw) == (h, w):
        return small
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = small.reshape(-1, 3).mean(0).astype(np.uint8)
    y0, x0 = int(rng.integers(0, h - nh + 1)), int(rng.integers(0, w - nw + 1))
    canvas[y0 : y0 + nh, x0 : x0 + nw] = small
    return canvas


def crop_cover(img: np.ndarray, rng: np.random.Generator, zoom: tuple[float, float] = (1.0, 1.6),
               hw: tuple[int, int] = CANVAS) -> np.ndarray:
    """A random window of the canvas's aspect, zoomed in by ``zoom`` (for person-free images only:
    a crop could cut a person out)."""
    h, w = hw
    ih, iw = img.shape[:2]
    z = rng.uniform(*zoom)
    ch, cw = ih / z, ih / z * w / h
    if cw > iw:
        cw, ch = iw / z, iw / z * h / w
    x0, y0 = rng.uniform(0, iw - cw), rng.uniform(0, max(0.0, ih - ch))
    crop = img[int(y0) : int(y0 + ch), int(x0) : int(x0 + cw)]
    if min(crop.shape[:2]) < 8:
        crop = img
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like degradations, each with its own probability."""
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    if rng.random() < 0.2:  # grayscale, as IR night cameras
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < 0.25:  # low light
        lut = (255 * (np.arange(256) / 255) ** rng.uniform(1.5, 3.0)).astype(np.uint8)
        img = lut[img]
    if rng.random() < 0.2:
        img = np.clip(img + rng.normal(0, rng.uniform(3, 12), img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 60))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(img)


def person_mask(h: int, w: int) -> np.ndarray:
    """A soft person-shaped alpha ``(h, w, 1)`` for an INRIA 96x160 crop: head, torso, legs."""
    m = np.zeros((160, 96), np.float32)
    cv2.ellipse(m, (48, 80), (22, 30), 0, 0, 360, 1.0, -1)
    cv2.ellipse(m, (48, 90), (18, 44), 0, 0, 360, 1.0, -1)
    cv2.circle(m, (48, 44), 10, 1.0, -1)
    m = cv2.GaussianBlur(m, (0, 0), 4)
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]


def _tone(patch: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move the patch's mean and contrast part of the way to the background's."""
    pm, ps = patch.reshape(-1, 3).mean(0), patch.reshape(-1, 3).std(0) + 1
    bm, bs = region.reshape(-1, 3).mean(0), region.reshape(-1, 3).std(0) + 1
    t = rng.uniform(0.0, 0.6)
    out = (patch.astype(np.float32) - pm) / ps * (ps * (1 + t * (bs / ps - 1))) + pm + t * (bm - pm)
    return np.clip(out, 0, 255).astype(np.uint8)


def composite(background: np.ndarray, patches: list[np.ndarray], rng: np.random.Generator,
              count: int | None = None, min_frac: float = 0.06, max_frac: float = 0.6
              ) -> tuple[np.ndarray, np.ndarray]:
    """Paste 96x160-layout ``patches`` (person crops, or patches of other scenes) on a copy of
    ``background``; returns the image and the pasted persons' boxes ``(K, 4)`` (xyxy)."""
    canvas = background.copy()
    h, w = canvas.shape[:2]
    boxes = []
    n = count or int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
    for _ in range(n):
        ph = max(8, int(h * rng.uniform(min_frac, max_frac) / 0.6))  # the person is 60 % of the crop
        pw = max(4, int(ph * 96 / 160))
        src = patches[int(rng.integers(len(patches)))]
        if rng.random() < 0.5:
            src = src[:, ::-1]
        patch = cv2.resize(src, (pw, ph), interpolation=cv2.INTER_AREA)
        x = int(rng.integers(-pw // 3, max(-pw // 3 + 1, w - 2 * pw // 3)))
        low = int((h - ph) * min(0.9, ph / h))  # a ground plane: larger persons lower in the frame
        y = int(rng.integers(min(low, h - ph // 2), max(low, h - ph // 2) + 1))
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
        if x1 <= x0 or y1 <= y0:
            continue
        patch = _tone(patch, canvas[y0:y1, x0:x1], rng)
        alpha = person_mask(ph, pw)
        if rng.random() < 0.25:  # occlusion: the lower part or one side is hidden
            cut = rng.uniform(0.3, 0.6)
            alpha = alpha.copy()
            if rng.random() < 0.5:
                alpha[int(ph * (1 - cut)) :] = 0
            else:
                alpha[:, int(pw * (1 - cut)) :] = 0
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
        p = patch[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
        canvas[y0:y1, x0:x1] = (a * p + (1 - a) * canvas[y0:y1, x0:x1]).astype(np.uint8)
        cl, ct, cr, cb = CROP_PERSON
        boxes.append([max(0, x + pw * cl), max(0, y + ph * ct), min(w, x + pw * cr), min(h, y + ph * cb)])
    return canvas, np.array(boxes, np.float32).reshape(-1, 4)


def split_crops(crops: list[Path], every: int = 7) -> tuple[list[Path], list[Path]]:
    """``(train, test)`` INRIA crops split by source image (``crop001001a.png`` -> ``001001``):
    every ``every``-th source image is held out, so no test person was seen in training."""
    ids = sorted({p.stem[4:10] for p in crops})
    held = set(ids[::every])
    return [p for p in crops if p.stem[4:10] not in held], [p for p in crops if p.stem[4:10] in held]


def scene_patches(scenes: list[np.ndarray], rng: np.random.Generator, n: int = 400) -> list[np.ndarray]:
    """96x160 patches cut from person-free scenes: the 'nothing pasted' twin of a person crop."""
    out = []
    for img in scenes[:n]:
        h, w = img.shape[:2]
        ph, pw = min(h, 160), min(w, 96)
        y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        out.append(img[y0 : y0 + ph, x0 : x0 + pw])
    return out


def _frame_on_canvas(frame: np.ndarray, person: bool, rng: np.random.Generator) -> np.ndarray:
    """A video frame on the canvas: fitted whole when it shows a person (a crop could cut them
    out), else fitted or cropped at random."""
    return fit(frame, rng) if person or rng.random() < 0.5 else crop_cover(frame, rng, (1.0, 1.4))


def _clip_images(root: Path, rng: np.random.Generator, every_s: float
                 ) -> Iterator[tuple[np.ndarray, int, str]]:
    for clip in load_clips(root, "train"):
        for frame, person, t in sample_frames(clip, every_s, seed=int(rng.integers(1 << 31))):
            held = t > 0.8 * clip.duration
            img = _frame_on_canvas(frame, bool(person), rng)
            yield img, int(person), f"{'val' if held else 'train'}:clips"


def _footage_images(root: Path, rng: np.random.Generator, every_s: float = 0.5, per_clip: int = 120
                    ) -> Iterator[tuple[np.ndarray, int, str]]:
    """Frames of teacher-labelled videos: whole ``val`` sources are validation; the eval split,
    should a labels file have one, is never read."""
    for split in ("train", "val"):
        for clip in load_clips(root, split):
            samples = sample_frames(clip, every_s, seed=int(rng.integers(1 << 31)))
            for i, (frame, person, _) in enumerate(samples):
                if i >= per_clip:
                    break
                img = _frame_on_canvas(frame, bool(person), rng)
                yield img, int(person), f"{split}:footage"


#: Person heights (fraction of the frame) of the composites' scale regimes, with their shares
#: under ``scale_mix``: the surveillance range, close persons cut by the frame, and tiny far ones.
SCALE_REGIMES = (((0.06, 0.6), 0.6), ((0.6, 1.2), 0.2), ((0.03, 0.08), 0.2))


def build_scene_set(clips: str | Path | None, inria_neg: str | Path | None, crops: str | Path | None,
                    external: str | Path | Sequence[str | Path] | None, seed: int = 0, every_s: float = 0.12,
                    composites_per_scene: int = 2, scale_mix: bool = False,
                    footage: str | Path | Sequence[str | Path] | None = None, boxer: Boxer | None = None,
                    twin_rule: TwinRule | None = None) -> tuple[SceneSet, SceneSet]:
    """``(train, val)`` from every source given (None skips a source); ``external`` and
    ``footage`` may each be one folder or several.

    ``boxer``: person boxes of an image (the teacher's). With it every real training image with
    persons (clip frames, external photos) that :func:`.twins.make_twins` can cover becomes a
    twin pair: the person twin replaces it, and the person-free twin is added as ``erased``.

    ``scale_mix``: each composite draws its persons' heights from one of :data:`SCALE_REGIMES`
    (else all from the surveillance range), so close persons cut by the frame and tiny ones are
    trained on too; the number of images stays the same.
    """
    rng = np.random.default_rng(seed)
    # twins draw from a stream of their own, so every other image is the same with or without them
    twin_rng = np.random.default_rng([seed, 1])
    x: list[np.ndarray] = []
    y: list[int] = []
    tags: list[str] = []

    def add(img: np.ndarray, label: int, tag: str, r: np.random.Generator = rng) -> None:
        x.append(degrade(img, r) if tag.startswith("train") else img)
        y.append(label)
        tags.append(tag)

    def add_real(img: np.ndarray, label: int, tag: str) -> None:
        pair = None
        if boxer is not None and label == 1 and tag.startswith("train"):
            pair = make_twins(img, boxer(img), twin_rng, twin_rule or TwinRule())
        if pair is None:
            add(img, label, tag)
        else:
            add(pair[0], 1, tag)
            add(pair[1], 0, "train:erased", twin_rng)

    if clips:
        for img, label, tag in _clip_images(Path(clips), rng, every_s):
            add_real(img, label, tag)
    for root in folders(footage):
        for img, label, tag in _footage_images(root, rng):
            add(img, label, tag)
    if inria_neg and crops:
        scenes = [s for s in (read_rgb(p) for p in image_files(inria_neg)) if s is not None]
        person_crops = [c for c in (read_rgb(p) for p in split_crops(image_files(crops))[0]) if c is not None]
        others = scene_patches(scenes, rng)
        n_val = len(scenes) // 10
        for i, scene in enumerate(scenes):
            tag = "val:composites" if i < n_val else "train:composites"
            for _ in range(composites_per_scene):
                bg = crop_cover(scene, rng, (1.0, 1.8))
                lo, hi = SCALE_REGIMES[0][0]
                if scale_mix:
                    pick = rng.choice(len(SCALE_REGIMES), p=[share for _, share in SCALE_REGIMES])
                    lo, hi = SCALE_REGIMES[int(pick)][0]
                add(composite(bg, person_crops, rng, min_frac=lo, max_frac=hi)[0], 1, tag)
                add(composite(bg, others, rng)[0] if rng.random() < 0.5 else bg, 0, tag)
    # folder by folder, so that adding a folder leaves the images drawn from the earlier ones unchanged
    for root in folders(external):
        for label, sub in ((1, "pos"), (0, "neg")):
            for folder in sorted(p for p in (root / sub).glob("*") if p.is_dir()):
                files = image_files(folder)
                for i, path in enumerate(rng.permutation(len(files))):
                    img = read_rgb(files[path])
                    if img is None:
                        continue
                    tag = f"{'val' if i % 10 == 0 else 'train'}:{folder.name}"
                    whole = label or rng.random() < 0.5
                    add_real(fit(img, rng) if whole else crop_cover(img, rng, (1.0, 1.3)), label, tag)
    xs, ys, ts = np.stack(x), np.array(y, np.int32), np.array(tags)
    is_val = np.char.startswith(ts, "val:")
    strip = np.array([t.split(":", 1)[1] for t in ts])
    train = SceneSet(xs[~is_val], ys[~is_val], strip[~is_val])
    val = SceneSet(xs[is_val], ys[is_val], strip[is_val])
    log.info("scene set: %d train, %d val; %s", len(train.y), len(val.y), train.counts())
    return train, val
