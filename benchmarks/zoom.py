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
run-time decision, as ``gapstream eval`` does: 0.5, or a crop model's own ``zoom_threshold``
and ``zoom_sustain_s`` (stop 20) for its zoomed frames. Nothing is tuned there.

``--gate`` (stop 19) also scores each crop model with its person class pooled only over the crop's
cells that move now (``NAMEg``), as the whole frame's ``motion.gate: person`` does; it lost.
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
    sustained,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.config import MotionConfig, ZoomConfig  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.meta import ModelMeta, load_meta  # noqa: E402
from gapstream.pipeline import resolve_post  # noqa: E402
from gapstream.smoothing import ScoreHistory  # noqa: E402
from gapstream.training.footage import summary  # noqa: E402
from gapstream.zones import masked_probs  # noqa: E402
from gapstream.zoom import Box, Regions, ZoomSpec, cut  # noqa: E402

CROP_SIDE = ZoomConfig().input_size  # the run time's crop input, so that screens and crop data match it


Moving = tuple[int, float, np.ndarray, list[Box], np.ndarray]


def moving_frames(path: Path, min_side: float) -> Iterator[Moving]:
    """Each frame of a video: its number (from 1), time, RGB pixels, zoom regions (the run
    time's :class:`gapstream.zoom.Regions` with the default motion background) and motion mask."""
    regions = Regions(ZoomConfig(min_side=min_side), MotionConfig())
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream), 1):
            img = frame.to_ndarray(format="rgb24")
            found = regions.find(img)
            yield n, float(frame.time or 0.0), img, found, regions.moving


def crop_moving(moving: np.ndarray, regions: list[Box], width: int, grid: tuple[int, int],
                min_share: float) -> np.ndarray:
    """Per crop, its cells that move now ``(K, h, w)`` as 0/1: a cell of a crop's ``grid`` counts
    when at least ``min_share`` of its pixels in ``moving`` (the frame's mask, ``width`` the frame's
    width in pixels) differ from the background, dilated by one cell as the frame's gate is."""
    scale = moving.shape[1] / width
    out = np.zeros((len(regions), *grid), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(regions):
        sub = moving[int(y0 * scale):max(int(y0 * scale) + 1, round(y1 * scale)),
                     int(x0 * scale):max(int(x0 * scale) + 1, round(x1 * scale))]
        if not sub.size:
            continue
        share = cv2.resize(sub, (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
        active = (share >= min_share).astype(np.uint8)
        out[i] = cv2.dilate(active, np.ones((3, 3), np.uint8))
    return out


def gated_person_probs(maps: np.ndarray, meta: ModelMeta, keep: np.ndarray) -> np.ndarray:
    """Person probabilities ``(K,)`` of crops whose person class pools only over the cells ``keep``
    ``(K, h, w)`` leaves (the frame gate's ``person`` mode); 0 for a crop with no such cell."""
    person = meta.person_index
    out = np.zeros(len(maps), np.float32)
    for i in range(len(maps)):
        if not (keep[i] >= 0.5).any():
            continue
        per_class = np.ones((*keep.shape[1:], len(meta.labels)), np.float32)
        per_class[:, :, person] = keep[i]
        out[i] = masked_probs(maps[i], meta, per_class)[person]
    return out


def crop_probs(path: Path, models: dict[str, GapModel], min_side: float,
               gate: bool = False) -> dict[str, list[float]]:
    """Per frame and crop model, the highest person probability of the frame's crops (0: none);
    with ``gate`` also ``NAMEg``: each crop's person class pooled over its moving cells only."""
    names = [*models, *(f"{name}g" for name in models if gate)]
    out: dict[str, list[float]] = {name: [] for name in names}
    min_share = MotionConfig().min_share
    for _, _, img, regions, moving in moving_frames(path, min_side):
        if not regions:
            for name in names:
                out[name].append(0.0)
            continue
        crops = cut(img, regions, CROP_SIDE)
        for name, model in models.items():
            probs, maps = model.predict(crops)
            out[name].append(float(probs[:, model.meta.person_index].max()))
            if gate:
                keep = crop_moving(moving, regions, img.shape[1], maps.shape[1:3], min_share)
                out[f"{name}g"].append(float(gated_person_probs(maps, model.meta, keep).max()))
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


def at_decision(dump: Dump, threshold: float = 0.5) -> dict:
    """Each clip's recall and false positives at ``threshold``, and the eval split's summary of them."""
    s = scores(dump, threshold)
    return ({"threshold": threshold, "clips": {x.name: {"recall": x.recall, "fp_rate": x.fp_rate} for x in s}}
            | summary(s))


def record_line(name: str, r: dict) -> str:
    """One model's eval-split record as a line: the mean recall, then each clip's figures."""
    def figures(v: dict) -> str:
        return " / ".join(f"{k} {100 * v[x]:.1f}" for k, x in (("recall", "recall"), ("FP", "fp_rate"))
                          if v[x] is not None)
    clips = "; ".join(f"{c.split('/')[-1].removesuffix('.mp4')} {figures(v)}" for c, v in r["clips"].items())
    head = (f"{name} at {r['threshold']}: mean recall {100 * r['mean_recall']:.1f} %, "
            f"worst FP {100 * r['max_fp_rate']:.1f} %")
    return f"{head}: {clips}"


def main() -> None:
    ap = footage_parser(__doc__.split("\n")[0], splits=("val", "train", "eval"))
    ap.add_argument("--base", default="A=models/gapstream_person_int8.tflite", metavar="NAME=TFLITE")
    ap.add_argument("--crop", action="append", required=True, metavar="NAME=TFLITE",
                    help="a crop model (repeatable); one decoding pass serves them all")
    ap.add_argument("--min-side", type=float, default=3.0, help="crops are at least 1/N of the frame height")
    ap.add_argument("--gate", action="store_true",
                    help="also each crop model gated (NAMEg): its person class pools over moving cells only")
    ap.add_argument("--dumps", required=True, metavar="DIR", help="per-frame probabilities, kept and reused")
    args = ap.parse_args()
    clips, cfg = footage(args)
    base_name, _, base_path = args.base.partition("=")
    dumps = str(Path(args.dumps, "eval")) if args.split == "eval" else args.dumps  # never mixed with val's
    base = cached_frames(clips, base_path, cfg, dumps, base_name)
    models = {name: GapModel(path, 1, (CROP_SIDE, CROP_SIDE))
              for name, _, path in (spec.partition("=") for spec in args.crop)}
    per_clip: dict[str, dict[str, list[float]]] = {}
    for clip in clips:
        for name, probs in crop_probs(clip.path, models, args.min_side, args.gate).items():
            per_clip.setdefault(name, {})[clip.name] = probs
        print(clip.name, file=sys.stderr, flush=True)
    base_meta = load_meta(base_path)

    def measure(dump: Dump, crop: str | None = None) -> dict:
        if args.split != "eval":
            return operating_points(dump)
        if crop is None:
            return at_decision(dump, resolve_post(cfg.post, base_meta).score_threshold)
        model = models.get(crop) or models[crop[:-1]]  # NAMEg: NAME's crops, gated
        spec = ZoomSpec(cfg.zoom, cfg.motion, "", threshold=model.meta.zoom_threshold,
                        sustain_s=model.meta.zoom_sustain_s)
        post = resolve_post(cfg.post, base_meta, spec)  # the run time's thresholds, config overrides included
        if post.zoom_sustain_s:
            dump = sustained(dump, post.zoom_sustain_s)
        return at_decision(dump, post.zoom_score_threshold)

    report = {base_name: measure(base)}
    for name, crops in per_clip.items():
        dump = zoomed(base, crops, cfg.post.smooth_window_s)
        Path(dumps, f"{name}.json").write_text(json.dumps({"model": name, "frames": dump}))
        report[name] = measure(dump, name)
    if args.split != "eval":
        publish(report, args.out)
        return
    for name, r in report.items():
        print(record_line(name, r))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
