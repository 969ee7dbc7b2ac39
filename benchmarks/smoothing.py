"""Score smoothing candidates on held-out footage: one run per clip, every window after.

Runs the shipped int8 model once over every clip of the given labelled folders' ``--split``
through the run-time pipeline with smoothing off (the motion gate as configured), keeps each
frame's (time, label, person probability), then scores the decision rules of stop 12 on them:
each frame alone, and the mean or median of the last 0.5 s or 1 s (``gapstream.smoothing``,
the code the post stage runs). Per rule: the mean per-clip recall and the pooled false
positives at 0.5, and R5, the mean recall at the rule's own threshold for at most 5 % pooled
false positives (``gapstream eval --tune-decision 0.05``). Never run it on the eval split::

    python benchmarks/smoothing.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --out benchmarks/results/smoothing_val.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from operating_points import Dump, frames, scores, worst_rise  # noqa: E402  (benchmarks/, beside this file)

from gapstream.config import load_config  # noqa: E402
from gapstream.smoothing import ScoreHistory  # noqa: E402
from gapstream.training.clips import folders, load_clips  # noqa: E402
from gapstream.training.footage import summary, tune_decision  # noqa: E402

RULES = {"frame": (0.0, "median"), "mean 0.5 s": (0.5, "mean"), "mean 1 s": (1.0, "mean"),
         "median 0.5 s": (0.5, "median"), "median 1 s": (1.0, "median")}


def score(dump: Dump, window: float, how: str) -> dict:
    smoothed = {}
    for name, rows in dump.items():
        h = ScoreHistory(window, how)
        smoothed[name] = [(t, lab, h.update(t, q) if window else q) for t, lab, q in rows]
    s = scores(smoothed)
    at_half, tuned = summary(s), tune_decision(s, 0.05)
    return {"threshold": tuned["threshold"], "R5": tuned["mean_recall"],
            "recall_at_0.5": at_half["mean_recall"], "P50": at_half["frame_fp_rate"],
            "fp_at_0.5": {x.name: x.fp_rate for x in s if x.empty_frames}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", action="append", required=True)
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--model", default="models/gapstream_person_int8.tflite")
    ap.add_argument("--config")
    ap.add_argument("--out")
    args = ap.parse_args()
    clips = [c for root in folders(args.clips) for c in load_clips(root, args.split)]
    cfg = load_config(args.config)
    dump = frames(clips, args.model, replace(cfg, post=replace(cfg.post, smooth_window_s=0.0)))
    report = {name: score(dump, *rule) for name, rule in RULES.items()}
    base = report["frame"]["fp_at_0.5"]
    for name, r in report.items():
        rise = worst_rise(r["fp_at_0.5"], base)
        print(f"{name}: own threshold {r['threshold']}, R5 {100 * r['R5']:.1f} %, recall at 0.5 "
              f"{100 * r['recall_at_0.5']:.1f} %, P50 {100 * r['P50']:.1f} %, "
              f"worst empty-clip rise {100 * rise:+.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
