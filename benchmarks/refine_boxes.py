"""A second look at the top CAM box with the crop model: CorLoc and AP@0.5 before and after.

Stop 24's rule 24g (``benchmarks/results/stop24.md``). On each annotated person image of a
composite split, the whole frame's boxes come from the run-time rule (:func:`gapstream.cam.localize`
at the model's own box threshold); the top box is then cut out with the zoom's geometry
(:func:`gapstream.zoom.crop_box`), run through the crop model, and replaced by the crop's own top
box (the crop taken as a person), mapped back; a crop without a box keeps the original::

    python benchmarks/refine_boxes.py --data data/surveillance-composite --split Train

Choose on Train; Test is the record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.cam import cam_batch, localize  # noqa: E402
from gapstream.config import PostConfig, ZoomConfig  # noqa: E402
from gapstream.detections import Detections  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.metrics import average_precision, corloc  # noqa: E402
from gapstream.training.evaluate import annotated_person_images  # noqa: E402
from gapstream.zoom import crop_box, cut  # noqa: E402

CROP_SIDE = ZoomConfig().input_size  # the run time's crop input


def refine(img: np.ndarray, det: Detections, crop: GapModel, cfg: PostConfig, min_side: float) -> Detections:
    """``det`` (boxes in ``img``'s pixels) with its top box replaced by the crop model's top box in a
    zoom-shaped crop around it; unchanged when there is no box or the crop gives none."""
    if not len(det):
        return det
    top = int(np.argmax(det.scores))
    h, w = img.shape[:2]
    x0, y0, x1, y1 = crop_box(tuple(det.xyxy[top].tolist()), 1.0, w, h, min_side)
    _, maps = crop.predict(cut(img, [(x0, y0, x1, y1)], CROP_SIDE))
    cam = cam_batch(maps, crop.meta.dense_kernel, np.array([crop.meta.person_index]))[0]
    sure = np.zeros(len(crop.meta.labels), np.float32)
    sure[crop.meta.person_index] = 1.0
    _, found = localize(cam, sure, crop.meta.person_index, x1 - x0, y1 - y0, cfg)
    if not len(found):
        return det
    xyxy = det.xyxy.copy()
    xyxy[top] = found.xyxy[int(np.argmax(found.scores))] + np.array([x0, y0, x0, y0], np.float32)
    return Detections(xyxy, det.scores.copy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/surveillance-composite")
    ap.add_argument("--split", default="Train", choices=["Train", "Test"])
    ap.add_argument("--model", default="models/gapstream_person_int8.tflite")
    ap.add_argument("--crop", default="models/gapstream_zoomcrop_int8.tflite")
    ap.add_argument("--min-side", type=float, default=3.0)
    args = ap.parse_args()
    model = GapModel(args.model)
    crop = GapModel(args.crop, None, (CROP_SIDE, CROP_SIDE))
    x, sizes, paths, gts = annotated_person_images(args.data, args.split, tuple(model.meta.input_size))
    cfg = PostConfig(threshold=model.meta.cam_threshold, box_scale=[1.0, 1.0], score_threshold=0.5)
    before, after = [], []
    for i in range(0, len(x), 32):
        probs, maps = model.predict(x[i:i + 32])
        cams = cam_batch(maps, model.meta.dense_kernel, np.argmax(probs, axis=1))
        for k, (cam, p) in enumerate(zip(cams, probs), i):
            w, h = (int(v) for v in sizes[k])
            _, det = localize(cam, p, model.meta.person_index, w, h, cfg)
            before.append(det)
            img = cv2.cvtColor(cv2.imread(str(paths[k])), cv2.COLOR_BGR2RGB)
            after.append(refine(img, det, crop, cfg, args.min_side))
    for name, dets in (("the whole frame's boxes", before), ("the top box refined by the crop model", after)):
        print(f"{args.split}, {name}: CorLoc {100 * corloc(dets, gts):.1f} %, "
              f"AP@0.5 {100 * average_precision(dets, gts, 0.5):.1f} % ({len(paths)} images)")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
