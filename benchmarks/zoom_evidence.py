"""The whole frame's evidence in the zoom's blobs: rank the blobs by it, or veto crops without it.

Stop 24's screening (``benchmarks/results/stop24.md``, rules 24c and 24d). ``zoom_blobs.py``'s
cached blobs (the ``--blobs`` largest per frame, with the crop model's person probability) get a
score from the whole frame's model (``--base``, at the run time's input size): the highest
per-cell ``logit(person) - logit(other)`` of its maps in the cells the blob's box covers. One
decoding pass keeps those scores in ``--dumps``; then, at each ``--threshold``, with the run time's
smoothing and the crop model's ``zoom_sustain_s``:

* rankings (rule 24c): ``area`` (the run time's), ``cam`` (by the score), ``area1cam`` (the largest
  blob, then the others by the score), each with ``--crops`` K;
* vetoes (rule 24d): by area with K crops, a crop whose blob scores under S counts as 0 (``--veto S``,
  repeatable).

::

    python benchmarks/zoom_evidence.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --dumps runs/dumps --crops 2 --crops 3 \\
        --threshold 0.65 --threshold 0.75 --veto -2 --veto 0 --out stop24_evidence.json

Run ``zoom_blobs.py`` with the same ``--dumps`` and ``--crop`` first: its blob cache is read, not
made, here. Never run it on the eval split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import cached_frames, footage  # noqa: E402
from zoom import moving_frames  # noqa: E402
from zoom_blobs import score, zoom_parser  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.meta import load_meta  # noqa: E402
from gapstream.zoom import blob_stats, grid_cells  # noqa: E402

Blob = list  # x0, y0, x1, y1 (mask pixels), area, crop probability (zoom_blobs.py's cache)


def cell_score(maps: np.ndarray, model: GapModel) -> np.ndarray:
    """Per cell of ``maps (h, w, C)``, the person's logit minus the other class's (2-class models),
    with the dense layer the run time pools with."""
    kernel, bias = model.meta.pool_weights()
    p = model.meta.person_index
    return maps @ (kernel[:, p] - kernel[:, 1 - p]) + (bias[p] - bias[1 - p])


def box_scores(score: np.ndarray, blobs: list, mask_hw: tuple[int, int]) -> list[float]:
    """Each blob's highest cell of ``score (h, w)`` in the cells its box (mask pixels) covers."""
    out = []
    for b in blobs:
        cx0, cy0, cx1, cy1 = grid_cells(b[:4], score.shape, mask_hw[1], mask_hw[0])
        out.append(float(score[cy0:cy1, cx0:cx1].max()))
    return out


def evidence_dump(path: Path, base: str, long_side: int, cached: list[list[Blob]], min_side: float,
                  min_area: int) -> list[list[float]]:
    """Per frame, the whole frame's score of each cached blob, the blobs recomputed and checked."""
    models: dict[tuple[int, int], GapModel] = {}
    rows: list[list[float]] = []
    for i, (_, _, img, regions, moving) in enumerate(moving_frames(path, min_side)):
        want = [b[:5] for b in cached[i]]
        if not regions:
            rows.append([])
            continue
        blobs = [list(b) for b in blob_stats(moving.astype(np.uint8), min_area)[:len(want)]]
        if blobs != want:
            raise SystemExit(f"{path.name} frame {i + 1}: blobs differ from the cache")
        h, w = img.shape[:2]
        if (h, w) not in models:
            meta = load_meta(base)
            models[(h, w)] = GapModel(base, None, meta.input_size_for(h, w, long_side))
        model = models[(h, w)]
        _, maps = model.predict(model.preprocess(img)[None])
        rows.append(box_scores(cell_score(maps[0], model), blobs, moving.shape))
    if len(rows) != len(cached):
        raise SystemExit(f"{path.name}: {len(rows)} frames, the blob cache {len(cached)}")
    return rows


def crop_max(pairs: list[tuple[Blob, float]], k: int, veto: float | None = None) -> float:
    """The highest crop probability of the first ``k`` (blob, score) pairs; with ``veto``, a blob
    scoring under it counts as 0."""
    return max((b[5] if veto is None or sc >= veto else 0.0 for b, sc in pairs[:k]), default=0.0)


RANKINGS = {
    "area": lambda pairs: pairs,
    "cam": lambda pairs: sorted(pairs, key=lambda bs: -bs[1]),
    "area1cam": lambda pairs: pairs[:1] + sorted(pairs[1:], key=lambda bs: -bs[1]),
}


def main() -> None:
    ap = zoom_parser(__doc__.split("\n")[0])  # --blobs: zoom_blobs.py's (its cache's name)
    ap.add_argument("--veto", type=float, action="append", default=[], help="veto scores S (repeatable)")
    ap.add_argument("--dumps", required=True, metavar="DIR", help="zoom_blobs.py's dumps; scores kept here")
    args = ap.parse_args()
    clips, cfg = footage(args)
    base_name, _, base_path = args.base.partition("=")
    base = cached_frames(clips, base_path, cfg, args.dumps, base_name)
    crop_meta = load_meta(args.crop)
    blobs = json.loads(Path(args.dumps, f"blobs{args.blobs}_{crop_meta.tflite_sha256[:12]}.json").read_text())
    cache = Path(args.dumps, f"evidence{args.blobs}_{load_meta(base_path).tflite_sha256[:12]}.json")
    scores = json.loads(cache.read_text()) if cache.is_file() else {}
    for clip in clips:
        if clip.name not in scores:
            scores[clip.name] = evidence_dump(clip.path, base_path, cfg.model.input_long_side,
                                              blobs[clip.name], cfg.zoom.min_side, cfg.zoom.min_area)
            cache.write_text(json.dumps(scores))
            print(clip.name, file=sys.stderr, flush=True)
    sustain = crop_meta.zoom_sustain_s or 0.0
    pairs = {c.name: [list(zip(bs, ss)) for bs, ss in zip(blobs[c.name], scores[c.name])] for c in clips}
    variants: dict[str, dict[str, list[float]]] = {}
    for k in args.crops or [2, 3]:
        for name, rank in RANKINGS.items():
            variants[f"{name} K{k}"] = {c: [crop_max(rank(f), k) for f in fs] for c, fs in pairs.items()}
        for s in args.veto:
            variants[f"veto{s:g} K{k}"] = {c: [crop_max(f, k, s) for f in fs] for c, fs in pairs.items()}
    report: dict = {}
    for name, crops in variants.items():
        score(report, name, base, crops, cfg.post.smooth_window_s, sustain,
              args.threshold or [crop_meta.zoom_threshold or 0.5], True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
