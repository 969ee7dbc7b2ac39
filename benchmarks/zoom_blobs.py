"""Which moving blobs get the zoom's crops: the largest (the run time's), or the most upright.

Stop 22's screening (``benchmarks/results/stop22.md``). On the night street of the validation
footage the two largest moving blobs are mostly cars and headlights, so the pedestrian rarely gets
a crop (stop 21). A person stands: its blob is taller than wide, a car's or a walking animal's is
wider. One decoding pass keeps, per frame, the ``--blobs`` largest blobs (box in motion-mask
pixels, area and the crop model's person probability of its crop), then every declared ranking is
scored from that dump at the run-time decision of the crop model (its ``zoom_threshold`` and
``zoom_sustain_s``; ``--threshold`` and ``--sustain`` score others from the same dump, as stop 23's
sweep did), the whole frame's probabilities (``operating_points.py``'s dump) as the base::

    python benchmarks/zoom_blobs.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --dumps runs/dumps \\
        --crop models/gapstream_zoomcrop_int8.tflite --out benchmarks/results/stop22_val.json

Rankings: ``area`` (the run time's), ``uprightG`` (area times min(1, h / w) ** G) and ``tallR``
(blobs with h / w below R left out, then by area), each with ``K`` crops. Never run it on the
eval split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import cached_frames, footage, footage_parser, sustained  # noqa: E402
from zoom import CROP_SIDE, at_decision, moving_frames, zoomed  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.config import ZoomConfig  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.zoom import blob_stats, crop_box, cut  # noqa: E402

Blob = tuple[int, int, int, int, int, float]  # x0, y0, x1, y1 (mask pixels), area, crop probability
Rank = Callable[[list[Blob]], list[Blob]]


def blob_dump(path: Path, model: GapModel, k: int, cfg: ZoomConfig) -> list[list[Blob]]:
    """Per frame, its ``k`` largest moving blobs with their crops' person probabilities."""
    out: list[list[Blob]] = []
    for _, _, img, regions, moving in moving_frames(path, cfg.min_side):
        if not regions:  # background still learning, or nothing moves
            out.append([])
            continue
        h, w = img.shape[:2]
        blobs = blob_stats(moving.astype(np.uint8), cfg.min_area)[:k]
        boxes = [crop_box(b[:4], w / moving.shape[1], w, h, cfg.min_side) for b in blobs]
        probs, _ = model.predict(cut(img, boxes, CROP_SIDE))
        person = probs[:, model.meta.person_index]
        out.append([(*b, float(p)) for b, p in zip(blobs, person.tolist())])
    return out


def aspect(b: Blob) -> float:
    """A blob's height over its width."""
    return (b[3] - b[1]) / max(1, b[2] - b[0])


def upright(gamma: float) -> Rank:
    """The blobs by area times min(1, h / w) ** ``gamma``: a wide blob counts for less."""
    return lambda blobs: sorted(blobs, key=lambda b: -b[4] * min(1.0, aspect(b)) ** gamma)


def tall(ratio: float) -> Rank:
    """The blobs at least ``ratio`` times as tall as wide, by area."""
    return lambda blobs: [b for b in blobs if aspect(b) >= ratio]


RANKINGS: dict[str, Rank] = {"area": lambda blobs: blobs, "upright1": upright(1.0), "upright2": upright(2.0),
                             "tall0.5": tall(0.5), "tall0.75": tall(0.75)}


def crop_max(frames: list[list[Blob]], rank: Rank, k: int) -> list[float]:
    """Per frame, the highest crop probability of the ``k`` blobs ``rank`` puts first."""
    return [max((b[5] for b in rank(blobs)[:k]), default=0.0) for blobs in frames]


def versus(r: dict, base: dict) -> str:
    """A candidate against the baseline: its mean recall's change and the largest rise of one empty
    clip's (no person frame) false positives, which rule 22a's bars read."""
    empty = [c for c, v in base["clips"].items() if v["recall"] is None]
    worst = max(empty, key=lambda c: r["clips"][c]["fp_rate"] - base["clips"][c]["fp_rate"])
    rise = r["clips"][worst]["fp_rate"] - base["clips"][worst]["fp_rate"]
    return (f"recall {100 * (r['mean_recall'] - base['mean_recall']):+.1f} points, worst empty clip "
            f"{100 * rise:+.1f} points ({worst})")


def score(report: dict, name: str, base: dict, crops: dict[str, list[float]], window_s: float,
          sustain_s: float, thresholds: list[float], named: bool) -> None:
    """The zoom's decision with the crops' probabilities ``crops`` (per clip, per frame) over the whole
    frame's ``base`` dump, smoothed over ``window_s`` and sustained over ``sustain_s``, at each
    threshold into ``report[name]`` (``name tT`` when ``named``), each printed against the first."""
    dump = zoomed(base, crops, window_s)
    decided = sustained(dump, sustain_s) if sustain_s else dump
    for t in thresholds:
        key = name + (f" t{t:.2f}" if named else "")
        r = report[key] = at_decision(decided, t)
        first = next(iter(report))  # the run time's ranking, by area (at the first threshold)
        print(f"{key}: mean recall {100 * r['mean_recall']:.1f} %; against {first}: "
              f"{versus(r, report[first])}", flush=True)


def zoom_parser(description: str) -> argparse.ArgumentParser:
    """:func:`footage_parser` with the options the blob-cache screens share (this script and
    ``zoom_evidence.py``)."""
    ap = footage_parser(description)
    ap.add_argument("--base", default="A=models/gapstream_person_int8.tflite", metavar="NAME=TFLITE")
    ap.add_argument("--crop", default="models/gapstream_zoomcrop_int8.tflite", help="the crop model")
    ap.add_argument("--blobs", type=int, default=6, help="blobs kept per frame, the largest first")
    ap.add_argument("--crops", type=int, action="append", help="crops per frame (repeatable; 2 and 3)")
    ap.add_argument("--threshold", type=float, action="append",
                    help="the decision threshold (repeatable; default: the crop model's zoom_threshold)")
    return ap


def main() -> None:
    ap = zoom_parser(__doc__.split("\n")[0])
    ap.add_argument("--sustain", type=float, action="append",
                    help="seconds a zoomed find must last (repeatable; default: the crop model's)")
    ap.add_argument("--share", type=float,
                    help="pool the crop model's maps over this top-k share of cells (default: its sidecar's)")
    ap.add_argument("--dumps", required=True, metavar="DIR", help="per-frame probabilities, kept and reused")
    args = ap.parse_args()
    clips, cfg = footage(args)
    base_name, _, base_path = args.base.partition("=")
    base = cached_frames(clips, base_path, cfg, args.dumps, base_name)
    model = GapModel(args.crop, 1, (CROP_SIDE, CROP_SIDE))
    share = ""
    if args.share is not None:  # stop 24's rule 24f: the run time pools with the sidecar's share
        model.meta = replace(model.meta, topk_share=args.share)
        share = f"_share{args.share:g}"
    # One cache per crop model (its file's digest) and share: the blobs' probabilities are theirs.
    cache = Path(args.dumps, f"blobs{args.blobs}_{model.meta.tflite_sha256[:12]}{share}.json")
    blobs = json.loads(cache.read_text()) if cache.is_file() else {}
    for clip in clips:
        if clip.name not in blobs:
            blobs[clip.name] = blob_dump(clip.path, model, args.blobs, cfg.zoom)
            cache.write_text(json.dumps(blobs))
            print(clip.name, file=sys.stderr, flush=True)
    thresholds = args.threshold or [model.meta.zoom_threshold or 0.5]
    sustains = args.sustain or [model.meta.zoom_sustain_s or 0.0]
    report: dict = {}
    for k in args.crops or [2, 3]:
        for name, rank in RANKINGS.items():
            crops = {clip.name: crop_max(blobs[clip.name], rank, k) for clip in clips}
            for sustain in sustains:
                label = f"{name} K{k}" + (f" s{sustain:g}" if args.sustain else "")
                score(report, label, base, crops, cfg.post.smooth_window_s, sustain, thresholds,
                      bool(args.threshold))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
