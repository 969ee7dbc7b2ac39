"""How closely int8 files follow the float32 model on real frames (the model alone, no run time).

Two int8 exports of one Keras model differ only in the frames their activation ranges were
calibrated on. This runs every ``--every``-th frame of labelled clips (never the eval split)
through the float32 reference and each int8 file at the run time's input size, and reports per
file: the mean |p_int8 - p_float32|, the share of frames whose decision at 0.5 differs, and the
frame recall on person seconds and false positives on empty ones at 0.5::

    python benchmarks/quant_fidelity.py --reference models/gapstream_person_float32.tflite \\
        --int8 models/gapstream_person_int8.tflite --int8 out/calib/gapstream_person_int8.tflite \\
        --clips data/footage_target --clips data/footage_target_c --clips data/footage_extra --split val
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pooling import AtAnySize  # noqa: E402

from gapstream.training.clips import load_clips  # noqa: E402


def clip_frames(path: Path, every: int) -> Iterator[tuple[np.ndarray, float]]:
    """Every ``every``-th decoded RGB frame of a clip with its time in seconds, one at a time."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i % every == 0:
                yield frame.to_ndarray(format="rgb24"), float(frame.time or 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", required=True, help="the float32 file")
    ap.add_argument("--int8", action="append", required=True, help="an int8 file (repeatable)")
    ap.add_argument("--clips", action="append", required=True, help="a folder with labels.json (repeatable)")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--every", type=int, default=5, help="every N-th frame (default 5)")
    ap.add_argument("--long-side", type=int, default=640)
    ap.add_argument("--out", help="write the per-clip numbers here as JSON")
    args = ap.parse_args()

    files = [args.reference, *args.int8]
    models = {f: AtAnySize(Path(f)) for f in files}  # one interpreter per file and input size, for all clips
    rows: dict[str, dict] = {}
    for root in args.clips:
        for clip in load_clips(root, args.split):
            # scored as decoded: a long 720p clip's sampled frames are not all held at once
            truth: list[bool] = []
            probs: dict[str, list[float]] = {f: [] for f in files}
            for frame, t in clip_frames(clip.path, args.every):
                label = clip.label_at(t)
                if label is None:
                    continue
                truth.append(label)
                for f, m in models.items():
                    probs[f].append(m.person_prob(frame, args.long_side))
            if truth:
                rows[f"{Path(root).name}/{clip.path.name}"] = {"person": truth, **probs}
    ref = {k: np.asarray(v[args.reference]) for k, v in rows.items()}
    print(f"{len(rows)} clips, {sum(len(v) for v in ref.values())} frames (every {args.every}th)")
    print("| file | mean abs(p - p_float) | decisions differ | mean clip recall | worst empty clip FP |")
    print("|---|---:|---:|---:|---:|")
    summary = {}
    for f in files:
        diffs, flips, recalls, fps = [], [], [], []
        for k, v in rows.items():
            p, truth = np.asarray(v[f]), np.asarray(v["person"], bool)
            diffs.append(np.abs(p - ref[k]))
            flips.append((p >= 0.5) != (ref[k] >= 0.5))
            if truth.any():
                recalls.append(float((p[truth] >= 0.5).mean()))
            if (~truth).any() and not truth.any():
                fps.append(float((p[~truth] >= 0.5).mean()))
        summary[f] = {"mean_abs_diff": float(np.concatenate(diffs).mean()),
                      "flips": float(np.concatenate(flips).mean()),
                      "mean_recall": float(np.mean(recalls)), "worst_empty_fp": max(fps, default=0.0)}
        s = summary[f]
        print(f"| {f} | {s['mean_abs_diff']:.4f} | {100 * s['flips']:.1f} % | {100 * s['mean_recall']:.1f} % "
              f"| {100 * s['worst_empty_fp']:.1f} % |")
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "clips": rows}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
