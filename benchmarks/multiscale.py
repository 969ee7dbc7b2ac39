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

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import Dump, footage, footage_parser, frames, operating_points, publish  # noqa: E402


def combine(a: Dump, b: Dump, how: str) -> Dump:
    """Frame by frame max or mean of two dumps of the same clips."""
    pick = max if how == "max" else (lambda p, q: (p + q) / 2)
    out = {}
    for name, rows in a.items():
        assert len(rows) == len(b[name]), f"{name}: the two scales decoded other frames"
        out[name] = [(t, lab, pick(p, q)) for (t, lab, p), (_, _, q) in zip(rows, b[name])]
    return out


def main() -> None:
    ap = footage_parser(__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/gapstream_person_int8.tflite")
    ap.add_argument("--long-side", action="append", type=int, required=True, help="exactly two")
    args = ap.parse_args()
    if len(args.long_side) != 2:
        ap.error("give --long-side twice")
    clips, cfg = footage(args)
    dumps = [frames(clips, args.model, dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, input_long_side=side))) for side in args.long_side]
    report = {f"at {side}": operating_points(d) for side, d in zip(args.long_side, dumps)}
    for how in ("max", "mean"):
        report[how] = operating_points(combine(dumps[0], dumps[1], how))
    publish(report, args.out)  # the first scale is the baseline


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
