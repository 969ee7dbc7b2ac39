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

This screens the idea offline, with the run time's regions (``gapstream/zoom.py``; the run time
has it as ``zoom.enabled``, off by default). With ``--split eval``
(``--clips ../shared/data/clips``) it only records each clip's recall and false positives at the
run-time decision threshold 0.5, as ``gapstream eval`` does: nothing is tuned there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import av
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
from gapstream.config import MotionConfig, ZoomConfig  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.smoothing import ScoreHistory  # noqa: E402
from gapstream.training.footage import summary  # noqa: E402
from gapstream.zoom import Box, Regions, cut  # noqa: E402

CROP_SIDE = 256


def moving_frames(path: Path, min_side: float) -> Iterator[tuple[int, float, np.ndarray, list[Box]]]:
    """Each frame of a video: its number (from 1), time, RGB pixels and zoom regions (the run
    time's :class:`gapstream.zoom.Regions` with the default motion background)."""
    regions = Regions(ZoomConfig(min_side=min_side), MotionConfig())
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream), 1):
            img = frame.to_ndarray(format="rgb24")
            yield n, float(frame.time or 0.0), img, regions.find(img)


def crop_probs(path: Path, models: dict[str, GapModel], min_side: float) -> dict[str, list[float]]:
    """Per frame and crop model, the highest person probability of the frame's crops (0: none)."""
    out: dict[str, list[float]] = {name: [] for name in models}
    for _, _, img, regions in moving_frames(path, min_side):
        if not regions:
            for name in models:
                out[name].append(0.0)
            continue
        crops = cut(img, regions, CROP_SIDE)
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
