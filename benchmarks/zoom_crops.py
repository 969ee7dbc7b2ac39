"""Crop-scale training images for stop 17's crop model C: ``zoom.py``'s motion crops of labelled clips.

Every 6th frame after the warm-up, each moving blob's crop (``zoom.py``'s geometry, ``--min-side``)
of a clip in ``--split`` (never use the eval split, nor the validation clips) is labelled by the
clip's per-second segments (0.3 s margin: frames near a change of label are skipped). A crop from a
person second is kept only when the YOLOv8n teacher scores a person of at least 0.5 in it (the
moving thing may be a car). Crops go to ``OUT/{pos,neg}/<clip>/``, the ``--external`` layout of
``gapstream train``::

    python benchmarks/zoom_crops.py --clips ../shared/data/clips --clips data/external5_clips \\
        --split train --teacher data/teacher/yolov8n_int8.tflite --out data/zoomcrops

With ``--boxes`` (stop 18), positives only: in the same frames of person seconds, the crops
around the teacher's two largest person boxes (confidence >= 0.5), with the same geometry, so
that a crop model sees persons at the scale the zoom shows them, not only the few motion crops
the teacher confirmed::

    python benchmarks/zoom_crops.py --clips ../shared/data/clips --split train --boxes \\
        --teacher data/teacher/yolov8n_int8.tflite --out data/zoomboxes

With ``--animals`` (stop 19), negatives only: the same geometry around the teacher's two largest
animal boxes (COCO bird to giraffe, confidence >= 0.3) in every 6th frame of the person-free
seconds of the clips and in every photo of ``--images`` folders; a crop in which the teacher finds
a person (>= 0.1) is dropped. ``--hard TFLITE`` writes a crop twice when that model calls it a
person (its hard negatives)::

    python benchmarks/zoom_crops.py --clips ../shared/data/clips --clips data/external5_clips \\
        --split train --animals --images data/external/neg/dogs_vs_cats_cats ... \\
        --hard runs/v2-lpft-zoomcrops-seed0/models/gapstream_person_int8.tflite \\
        --teacher data/teacher/yolov8n_int8.tflite --out data/animalcrops

With ``--vehicles`` (stop 22), the same around the teacher's car, bus and truck boxes (rule 22b's
crop model C4)::

    python benchmarks/zoom_crops.py --clips ../shared/data/clips --split train --vehicles \
        --images data/vehicle_photos/highway_tidar --images data/external/neg/cctv_human_detection \
        --images data/external/neg/coco128 --teacher data/teacher/yolov8n_int8.tflite --out data/vehiclecrops

With ``--peaks TFLITE`` (stop 25's rule 25c), negatives at the whole frame's two highest person-score
cells by that model (``static_look.py``'s static look), in every 12th frame of the person-free
seconds of the clips and in every photo of ``--images`` folders: what the static look would show the
crop model where nobody is::

    python benchmarks/zoom_crops.py --clips ../shared/data/clips --split train \
        --peaks models/gapstream_person_int8.tflite --images ../shared/data/INRIAPerson/Train/neg \
        --images data/external/neg/cctv_human_detection --images data/vehicle_photos/highway_tidar \
        --hard models/gapstream_zoomcrop_int8.tflite --teacher data/teacher/yolov8n_int8.tflite \
        --out data/staticcrops
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from static_look import StaticRegions  # noqa: E402
from zoom import CROP_SIDE, moving_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.media import IMAGE_EXTS  # noqa: E402
from gapstream.training.clips import Clip, folders, load_clips  # noqa: E402
from gapstream.training.teacher import YoloTeacher  # noqa: E402
from gapstream.zoom import crop_box, cut  # noqa: E402

EVERY, MARGIN_S, TEACHER_PERSON, BOXES = 6, 0.3, 0.5, 2
ANIMALS, TEACHER_ANIMAL, NO_PERSON = tuple(range(14, 24)), 0.3, 0.1  # COCO bird .. giraffe
VEHICLES = (2, 5, 7)  # COCO car, bus, truck (bicycles and motorcycles are mostly ridden)


def save(folder: Path, name: str, crop: np.ndarray) -> None:
    """Write an RGB ``crop`` as ``folder/name.jpg`` (the folder made when needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 92])


def clip_crops(clip: Clip, teacher: YoloTeacher, out: Path, min_side: float) -> dict[str, int]:
    """Write one clip's labelled crops; the counts kept per label and dropped."""
    counts = {"pos": 0, "neg": 0, "dropped": 0}
    tag = clip.name.replace("/", "__").removesuffix(".mp4")
    for n, t, img, regions, _ in moving_frames(clip.path, min_side):
        label = clip.label_at(t, MARGIN_S)
        if n % EVERY or label is None or not regions:
            continue
        for k, crop in enumerate(cut(img, regions, CROP_SIDE)):
            if label and teacher.person_score(crop) < TEACHER_PERSON:
                counts["dropped"] += 1
                continue
            kind = "pos" if label else "neg"
            save(out / kind / tag, f"{n:05d}_{k}", crop)
            counts[kind] += 1
    return counts


def box_crops(img: np.ndarray, boxes: np.ndarray, min_side: float) -> list[np.ndarray]:
    """Crops of ``img`` around the BOXES largest of teacher ``boxes`` (K, 5), with the zoom's geometry."""
    h, w = img.shape[:2]
    largest = sorted(boxes.tolist(), key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))[:BOXES]
    regions = [r for r in (crop_box((b[0], b[1], b[2], b[3]), 1.0, w, h, min_side) for b in largest)
               if r[2] > r[0] and r[3] > r[1]]
    return list(cut(img, regions, CROP_SIDE)) if regions else []


def object_crops(img: np.ndarray, teacher: YoloTeacher, min_side: float,
                 classes: tuple[int, ...] = ANIMALS) -> list[np.ndarray]:
    """Crops of ``img`` around its BOXES largest teacher boxes of ``classes`` (animals; vehicles with
    ``--vehicles``), without a teacher person."""
    crops = box_crops(img, teacher.class_boxes(img, classes, TEACHER_ANIMAL), min_side)
    return [c for c in crops if teacher.person_score(c) < NO_PERSON]


class NegativeWriter:
    """Writes negative crops (animals, vehicles) to ``out/neg/<group>/``; twice when the ``hard`` model
    calls one a person."""

    def __init__(self, out: Path, hard: GapModel | None) -> None:
        self.out, self.hard = out, hard
        self.counts = {"neg": 0, "hard": 0}

    def write(self, group: str, stem: str, crops: list[np.ndarray]) -> None:
        folder = self.out / "neg" / group
        for k, crop in enumerate(crops):
            copies = 1
            if self.hard is not None:
                probs, _ = self.hard.predict(crop[None])
                copies = 2 if probs[0, self.hard.meta.person_index] >= 0.5 else 1
                self.counts["hard"] += copies - 1
            for c in range(copies):
                save(folder, f"{stem}_{k}{'_h' * c}", crop)
            self.counts["neg"] += copies


def peak_crops(regions: StaticRegions, teacher: YoloTeacher) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``--peaks``: a frame's crops at the static look's regions, without a teacher person."""
    def crops(img: np.ndarray) -> list[np.ndarray]:
        return [c for c in cut(img, regions(img), CROP_SIDE) if teacher.person_score(c) < NO_PERSON]
    return crops


def clip_object_crops(clip: Clip, crops: Callable[[np.ndarray], list[np.ndarray]], writer: NegativeWriter,
                      min_side: float, every: int = EVERY) -> None:
    """``--animals`` (``--vehicles``, ``--peaks``) in one clip's person-free seconds."""
    group = clip.name.replace("/", "__").removesuffix(".mp4")
    for n, t, img, _, _ in moving_frames(clip.path, min_side):
        if n % every or clip.label_at(t, MARGIN_S) is not False:
            continue
        writer.write(group, f"{n:05d}", crops(img))


def photo_group(folder: Path) -> str:
    """The crops' group (sub-folder) for a photo folder: its name, with its parent's in front when the
    name only says what the label already does (INRIA's ``Train/neg`` -> ``Train__neg``)."""
    return f"{folder.parent.name}__{folder.name}" if folder.name in ("neg", "pos") else folder.name


def photo_object_crops(folder: Path, crops: Callable[[np.ndarray], list[np.ndarray]],
                       writer: NegativeWriter) -> None:
    """``--animals`` (``--vehicles``, ``--peaks``) in every photo of ``folder``."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        img = cv2.imread(str(path))
        if img is not None:
            writer.write(photo_group(folder), path.stem, crops(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))


def clip_box_crops(clip: Clip, teacher: YoloTeacher, out: Path, min_side: float) -> dict[str, int]:
    """Write one clip's teacher-box person crops (``--boxes``); the count written."""
    counts = {"pos": 0}
    folder = out / "pos" / clip.name.replace("/", "__").removesuffix(".mp4")
    for n, t, img, _, _ in moving_frames(clip.path, min_side):
        if n % EVERY or not clip.label_at(t, MARGIN_S):
            continue
        for k, crop in enumerate(box_crops(img, teacher.person_boxes(img, TEACHER_PERSON), min_side)):
            save(folder, f"{n:05d}_{k}", crop)
            counts["pos"] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", action="append", required=True)
    ap.add_argument("--split", default="train", choices=["train"])
    ap.add_argument("--teacher", required=True, help="YOLOv8n TFLite (configs/datasets/teacher.json)")
    ap.add_argument("--min-side", type=float, default=3.0)
    ap.add_argument("--boxes", action="store_true", help="positives around the teacher's person boxes")
    ap.add_argument("--animals", action="store_true", help="negatives around the teacher's animal boxes")
    ap.add_argument("--vehicles", action="store_true",
                    help="as --animals, around the teacher's car, bus and truck boxes (stop 22)")
    ap.add_argument("--peaks", metavar="TFLITE",
                    help="negatives at this whole-frame model's highest person-score cells (stop 25)")
    ap.add_argument("--images", action="append", default=[], help="photo folders for --animals")
    ap.add_argument("--hard", metavar="TFLITE", help="--animals: write the crops this model flags twice")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"gapstream: error: {out} is not empty")
    teacher = YoloTeacher(args.teacher, 2)
    clips = [c for root in folders(args.clips) for c in load_clips(root, args.split)]
    if args.animals or args.vehicles or args.peaks:
        classes = VEHICLES if args.vehicles else ANIMALS
        crops: Callable[[np.ndarray], list[np.ndarray]] = (
            peak_crops(StaticRegions(args.peaks, args.min_side), teacher) if args.peaks
            else lambda img: object_crops(img, teacher, args.min_side, classes))
        writer = NegativeWriter(out, GapModel(args.hard, 2, (CROP_SIDE, CROP_SIDE)) if args.hard else None)
        for clip in clips:
            clip_object_crops(clip, crops, writer, args.min_side, 2 * EVERY if args.peaks else EVERY)
            print(clip.name, writer.counts, flush=True)
        for folder in args.images:
            photo_object_crops(Path(folder), crops, writer)
            print(folder, writer.counts, flush=True)
        return
    for clip in clips:
        write = clip_box_crops if args.boxes else clip_crops
        print(clip.name, write(clip, teacher, out, args.min_side), flush=True)


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
