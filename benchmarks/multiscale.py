"""One model at two input scales, combined frame by frame, at matched false-positive budgets.

Stop 14's screening of two-scale inference (``benchmarks/results/stop14.md``): the model runs over
the held-out clips through the default run time at each ``--long-side``, and each frame's person
probability is the max or the mean of the scales' (each gated and smoothed at its own scale, so
this screens the idea; a run-time version would combine before smoothing). Reported with
``operating_points.py``'s figures, against the first scale alone as the baseline::

    python benchmarks/multiscale.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --long-side 640 --long-side 320
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import Dump, frames, operating_points, publish  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.config import load_config  # noqa: E402
from gapstream.training.clips import folders, load_clips  # noqa: E402


def combine(a: Dump, b: Dump, how: str) -> Dump:
    """Frame by frame max or mean of two dumps of the same clips."""
    pick = max if how == "max" else (lambda p, q: (p + q) / 2)
    out = {}
    for name, rows in a.items():
        assert len(rows) == len(b[name]), f"{name}: the two scales decoded other frames"
        out[name] = [(t, lab, pick(p, q)) for (t, lab, p), (_, _, q) in zip(rows, b[name])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", action="append", required=True)
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--model", default="models/gapstream_person_int8.tflite")
    ap.add_argument("--long-side", action="append", type=int, required=True, help="exactly two")
    ap.add_argument("--config", help="pipeline config (default: configs/default.yaml's defaults)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if len(args.long_side) != 2:
        ap.error("give --long-side twice")
    clips = [c for root in folders(args.clips) for c in load_clips(root, args.split)]
    cfg = load_config(args.config)
    dumps = [frames(clips, args.model, dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, input_long_side=side))) for side in args.long_side]
    report = {f"at {side}": operating_points(d) for side, d in zip(args.long_side, dumps)}
    for how in ("max", "mean"):
        report[how] = operating_points(combine(dumps[0], dumps[1], how))
    publish(report, args.out)  # the first scale is the baseline


if __name__ == "__main__":
    main()
