"""Crop-scale training images for stop 17's crop model C: ``zoom.py``'s motion crops of labelled clips.

Every 6th frame after the warm-up, each moving blob's crop (``zoom.py``'s geometry, ``--min-side``)
of a clip in ``--split`` (never use the eval split, nor the validation clips) is labelled by the
clip's per-second segments (0.3 s margin: frames near a change of label are skipped). A crop from a
person second is kept only when the YOLOv8n teacher scores a person of at least 0.5 in it (the
moving thing may be a car). Crops go to ``OUT/{pos,neg}/<clip>/``, the ``--external`` layout of
``gapstream train``::

    python benchmarks/zoom_crops.py --clips ../shared/data/clips --clips data/external5_clips \\
        --split train --teacher data/teacher/yolov8n_int8.tflite --out data/zoomcrops
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoom import CROP_SIDE, moving_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.training.clips import Clip, folders, load_clips  # noqa: E402
from gapstream.training.teacher import YoloTeacher  # noqa: E402
from gapstream.zoom import cut  # noqa: E402

EVERY, MARGIN_S, TEACHER_PERSON = 6, 0.3, 0.5


def clip_crops(clip: Clip, teacher: YoloTeacher, out: Path, min_side: float) -> dict[str, int]:
    """Write one clip's labelled crops; the counts kept per label and dropped."""
    counts = {"pos": 0, "neg": 0, "dropped": 0}
    tag = clip.name.replace("/", "__").removesuffix(".mp4")
    for n, t, img, regions in moving_frames(clip.path, min_side):
        label = clip.label_at(t, MARGIN_S)
        if n % EVERY or label is None or not regions:
            continue
        for k, crop in enumerate(cut(img, regions, CROP_SIDE)):
            if label and teacher.person_score(crop) < TEACHER_PERSON:
                counts["dropped"] += 1
                continue
            kind = "pos" if label else "neg"
            folder = out / kind / tag
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{n:05d}_{k}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            counts[kind] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", action="append", required=True)
    ap.add_argument("--split", default="train", choices=["train"])
    ap.add_argument("--teacher", required=True, help="YOLOv8n TFLite (configs/datasets/teacher.json)")
    ap.add_argument("--min-side", type=float, default=3.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"gapstream: error: {out} is not empty")
    teacher = YoloTeacher(args.teacher, 2)
    for clip in (c for root in folders(args.clips) for c in load_clips(root, args.split)):
        print(clip.name, clip_crops(clip, teacher, out, args.min_side), flush=True)


if __name__ == "__main__":
    main()
