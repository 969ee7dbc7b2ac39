"""Motion-region zoom: crops of what moves, through a crop model, max with the full frame's decision.

Stop 17's screening (``benchmarks/results/stop17.md``). NVRs such as Frigate run their detector on
regions around motion, so that a far person fills more of the input. Here each frame's moving
blobs (the motion gate's running-average background, at 320 px wide) give up to two square crops
of the full-resolution frame, twice the blob's longer side and at least ``1 / --min-side`` of the
frame height, each run at 256x256 through a crop model. A frame's person probability is the max of
the base model's (through the default run time: gate and smoothing) and the crops' (their max,
smoothed the same way). Reported with ``operating_points.py``'s figures, the base model first::

    python benchmarks/zoom.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --dumps runs/dumps --min-side 3 \\
        --crop Z3=models/gapstream_person_int8.tflite --out benchmarks/results/stop17_val.json

This screens the idea offline; the run time has no zoom (it lost, stop 17). With ``--split eval``
(``--clips ../shared/data/clips``) it only records each clip's recall and false positives at the
run-time decision threshold 0.5, as ``gapstream eval`` does: nothing is tuned there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import (  # noqa: E402
    Dump,
    cached_frames,
    footage,
    footage_parser,
    operating_points,
    publish,
    scores,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.config import MotionConfig  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.motion import Background  # noqa: E402
from gapstream.smoothing import ScoreHistory  # noqa: E402
from gapstream.training.footage import summary  # noqa: E402

MASK_WIDTH = 320  # the motion mask's width (the gate's background is 320 px wide at long side 640)
CROP_SIDE = 256
MOTION = MotionConfig()  # the gate's default background: threshold, learning rate, warm-up frames


def moving_blobs(moving: np.ndarray, k: int = 2, min_area: int = 6) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` in mask pixels of the ``k`` largest blobs of a 0/1 motion mask."""
    m = cv2.morphologyEx(moving, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))  # sensor noise
    m = cv2.dilate(m, np.ones((5, 5), np.uint8))  # one person's parts into one blob
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    blobs = sorted((stats[i] for i in range(1, n) if stats[i, 4] >= min_area), key=lambda s: -s[4])
    return [(int(s[0]), int(s[1]), int(s[0] + s[2]), int(s[1] + s[3])) for s in blobs[:k]]


def crop_box(blob: tuple[int, int, int, int], scale: float, width: int, height: int,
             min_side: float) -> tuple[int, int, int, int]:
    """A square frame region around ``blob`` (mask pixels times ``scale``): twice its longer side,
    at least ``height / min_side``, at most the frame's shorter side, shifted inside the frame."""
    x0, y0, x1, y1 = (v * scale for v in blob)
    side = min(max(2 * max(x1 - x0, y1 - y0), height / min_side), height, width)
    left = min(max((x0 + x1 - side) / 2, 0), width - side)
    top = min(max((y0 + y1 - side) / 2, 0), height - side)
    s, left_i, top_i = round(side), round(left), round(top)
    return left_i, top_i, left_i + s, top_i + s


def moving_frames(path: Path) -> Iterator[tuple[int, float, np.ndarray, list[tuple[int, int, int, int]]]]:
    """Each frame of a video: its number (from 1), time, RGB pixels and moving blobs (none while the
    background warms up)."""
    background = Background(MOTION.threshold, MOTION.background_alpha)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream), 1):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            moving = background.moving(img, (MASK_WIDTH, round(h * MASK_WIDTH / w))).astype(np.uint8)
            yield n, float(frame.time or 0.0), img, moving_blobs(moving) if n > MOTION.warmup_frames else []


def cut(img: np.ndarray, blobs: list[tuple[int, int, int, int]], min_side: float) -> list[np.ndarray]:
    """The frame's crops around ``blobs`` (see :func:`crop_box`), each at CROP_SIDE x CROP_SIDE."""
    h, w = img.shape[:2]
    boxes = [crop_box(b, w / MASK_WIDTH, w, h, min_side) for b in blobs]
    return [cv2.resize(img[y0:y1, x0:x1], (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)
            for x0, y0, x1, y1 in boxes]


def crop_probs(path: Path, models: dict[str, GapModel], min_side: float) -> dict[str, list[float]]:
    """Per frame and crop model, the highest person probability of the frame's crops (0: none)."""
    out: dict[str, list[float]] = {name: [] for name in models}
    for _, _, img, blobs in moving_frames(path):
        if not blobs:
            for name in models:
                out[name].append(0.0)
            continue
        crops = np.stack(cut(img, blobs, min_side))
        for name, model in models.items():
            probs, _ = model.predict(crops)
            out[name].append(float(probs[:, model.meta.person_index].max()))
    return out


def zoomed(base: Dump, crops: dict[str, list[float]], window_s: float) -> Dump:
    """``base`` with each frame's probability raised to its crops' (smoothed like the run time's)."""
    out = {}
    for name, rows in base.items():
        probs = crops[name]
        if len(probs) != len(rows):
            raise SystemExit(f"{name}: the base dump has {len(rows)} frames, the crops {len(probs)}")
        history = ScoreHistory(window_s)
        out[name] = [(t, lab, max(p, history.update(t, q))) for (t, lab, p), q in zip(rows, probs)]
    return out


def at_decision(dump: Dump) -> dict:
    """Each clip's recall and false positives at 0.5, and the eval split's summary of them."""
    s = scores(dump)
    return {"clips": {x.name: {"recall": x.recall, "fp_rate": x.fp_rate} for x in s}} | summary(s)


def record_line(name: str, r: dict) -> str:
    """One model's eval-split record as a line: the mean recall, then each clip's figures."""
    def figures(v: dict) -> str:
        return " / ".join(f"{k} {100 * v[x]:.1f}" for k, x in (("recall", "recall"), ("FP", "fp_rate"))
                          if v[x] is not None)
    clips = "; ".join(f"{c.split('/')[-1].removesuffix('.mp4')} {figures(v)}" for c, v in r["clips"].items())
    head = f"{name}: mean recall {100 * r['mean_recall']:.1f} %, worst FP {100 * r['max_fp_rate']:.1f} %"
    return f"{head}: {clips}"


def main() -> None:
    ap = footage_parser(__doc__.split("\n")[0], splits=("val", "train", "eval"))
    ap.add_argument("--base", default="A=models/gapstream_person_int8.tflite", metavar="NAME=TFLITE")
    ap.add_argument("--crop", action="append", required=True, metavar="NAME=TFLITE",
                    help="a crop model (repeatable); one decoding pass serves them all")
    ap.add_argument("--min-side", type=float, default=3.0, help="crops are at least 1/N of the frame height")
    ap.add_argument("--dumps", required=True, metavar="DIR", help="per-frame probabilities, kept and reused")
    args = ap.parse_args()
    clips, cfg = footage(args)
    base_name, _, base_path = args.base.partition("=")
    dumps = str(Path(args.dumps, "eval")) if args.split == "eval" else args.dumps  # never mixed with val's
    base = cached_frames(clips, base_path, cfg, dumps, base_name)
    models = {name: GapModel(path, 1, (CROP_SIDE, CROP_SIDE))
              for name, _, path in (spec.partition("=") for spec in args.crop)}
    per_clip: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    for clip in clips:
        for name, probs in crop_probs(clip.path, models, args.min_side).items():
            per_clip[name][clip.name] = probs
        print(clip.name, file=sys.stderr, flush=True)
    measure = at_decision if args.split == "eval" else operating_points
    report = {base_name: measure(base)}
    for name, crops in per_clip.items():
        dump = zoomed(base, crops, cfg.post.smooth_window_s)
        Path(dumps, f"{name}.json").write_text(json.dumps({"model": name, "frames": dump}))
        report[name] = measure(dump)
    if args.split != "eval":
        publish(report, args.out)
        return
    for name, r in report.items():
        print(record_line(name, r))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
