"""How much runs of one training recipe that differ only in their seed disagree on held-out footage.

Runs every model over the clips' ``--split`` through the default run time (``operating_points.frames``,
the code of ``gapstream run``), takes each clip's frame rate at the fixed threshold 0.5 (recall on
its person frames, false positives on its empty frames), and reports, for every pair of models
within one recipe, the mean absolute per-clip difference in points. A recipe whose seeds agree can
be judged on one run; one whose seeds do not cannot. Stop 15's figures (``benchmarks/results/stop15.md``);
never run it on the eval split::

    M=gapstream_person_int8.tflite; S=runs/v2-topk-seed
    python benchmarks/seed_agreement.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val \\
        --recipe A=models/$M,${S}1/models/$M,${S}2/models/$M,${S}3/models/$M \\
        --recipe LPFT=runs/v2-lpft-seed0/models/$M,runs/v2-lpft-seed1/models/$M
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import Dump, footage, footage_parser, frames, scores  # noqa: E402


def clip_rates(dump: Dump) -> dict[tuple[str, str], float]:
    """Each clip's rates at 0.5 (``scores``): ``("person", clip)`` recall, ``("empty", clip)`` FP."""
    out = {}
    for s in scores(dump):
        if s.person_frames:
            out[("person", s.name)] = s.recall
        if s.empty_frames:
            out[("empty", s.name)] = s.fp_rate
    return out


def disagreement(dumps: list[Dump]) -> dict[str, list[float]]:
    """Per pair of runs, the mean absolute per-clip difference (points) of recall and of false positives."""
    rates = [clip_rates(d) for d in dumps]
    out: dict[str, list[float]] = {"person_recall": [], "empty_fp": []}
    for a, b in itertools.combinations(rates, 2):
        for kind, key in (("person", "person_recall"), ("empty", "empty_fp")):
            diffs = [abs(a[k] - b[k]) for k in a if k[0] == kind]
            out[key].append(round(100 * float(np.mean(diffs)), 1))
    return out


def main() -> None:
    ap = footage_parser(__doc__.split("\n")[0])
    ap.add_argument("--recipe", action="append", required=True, metavar="NAME=TFLITE,TFLITE[,...]",
                    help="two or more models trained by one recipe with different seeds (repeatable)")
    args = ap.parse_args()
    recipes = {}
    for spec in args.recipe:
        name, _, paths = spec.partition("=")
        recipes[name] = paths.split(",")
        if len(recipes[name]) < 2:
            ap.error(f"--recipe {name}: give at least two models")
    clips, cfg = footage(args)
    report = {name: disagreement([frames(clips, p, cfg) for p in paths]) for name, paths in recipes.items()}
    for name, r in report.items():
        print(f"{name}: per-clip recall differs by {r['person_recall']} points, "
              f"false positives by {r['empty_fp']} (one value per pair of runs)")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
