"""Stop 25's rule 25a: a static look, the crop model on the whole frame's strongest cells.

The zoom looks only where things move, and the motion gate hides persons who stand still. Here,
each frame, the crop model also looks at square crops centred on the whole frame's ``N`` highest
person-score cells (all cells, ungated; a cell inside an earlier peak's crop is skipped), each
the zoom's smallest crop (``height / zoom.min_side``). One decoding pass keeps every frame's static
crop probabilities; then the zoom's decision is scored with the frame's zoom probability the
larger of its motion crops' (``zoom_blobs.py``'s cache, by area) and its static crops', against the
run time's motion crops alone::

    python benchmarks/static_look.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --dumps runs/dumps --out benchmarks/results/stop25_static.json

Never run it on the eval split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operating_points import cached_frames, footage  # noqa: E402
from zoom import CROP_SIDE  # noqa: E402
from zoom_blobs import RANKINGS, crop_max, score, zoom_parser  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.zoom import Box, cut, person_scores, static_regions  # noqa: E402

PEAKS = 2  # static crops kept per frame; a candidate with N uses the first N


class StaticRegions:
    """The static look's regions of full-size RGB frames: the whole-frame model at each frame size's
    keep-aspect input, then :func:`gapstream.zoom.static_regions` on its person scores."""

    def __init__(self, path: str, min_side: float, n: int = PEAKS) -> None:
        self.model, self.min_side, self.n = GapModel(path, 2), min_side, n

    def __call__(self, img: np.ndarray) -> list[Box]:
        h, w = img.shape[:2]
        size = self.model.meta.input_size_for(h, w)
        if self.model.input_size != size:
            self.model = GapModel(self.model.path, 2, size)
        _, maps = self.model.predict(self.model.preprocess(img)[None])
        return static_regions(person_scores(maps[0], self.model.meta), w, h, self.min_side, self.n)


def static_dump(path: Path, regions: StaticRegions, crop: GapModel) -> list[list[float]]:
    """Per frame, the crop model's person probability of the static crops."""
    out: list[list[float]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            img = frame.to_ndarray(format="rgb24")
            probs, _ = crop.predict(cut(img, regions(img), CROP_SIDE))
            out.append(probs[:, crop.meta.person_index].astype(float).tolist())
    return out


def main() -> None:
    ap = zoom_parser(__doc__.split("\n")[0])
    ap.add_argument("--dumps", required=True, metavar="DIR", help="per-frame probabilities, kept and reused")
    ap.add_argument("--static-threshold", type=float, action="append", default=[],
                    help="a static crop counts only at or above this (repeatable; rule 25b); "
                         "without it, static crops count as motion crops do (rule 25a)")
    args = ap.parse_args()
    clips, cfg = footage(args)
    base_name, _, base_path = args.base.partition("=")
    base = cached_frames(clips, base_path, cfg, args.dumps, base_name)
    crop = GapModel(args.crop, 2, (CROP_SIDE, CROP_SIDE))
    regions = StaticRegions(base_path, cfg.zoom.min_side)
    tag = f"{crop.meta.tflite_sha256[:12]}_{regions.model.meta.tflite_sha256[:12]}"
    blobs_cache = Path(args.dumps, f"blobs{args.blobs}_{crop.meta.tflite_sha256[:12]}.json")
    if not blobs_cache.is_file():
        raise SystemExit(f"{blobs_cache}: run zoom_blobs.py with the same --dumps and --crop first")
    blobs = json.loads(blobs_cache.read_text())
    cache = Path(args.dumps, f"static{PEAKS}_{tag}.json")
    static = json.loads(cache.read_text()) if cache.is_file() else {}
    for clip in clips:
        if clip.name not in static:
            static[clip.name] = static_dump(clip.path, regions, crop)
            cache.write_text(json.dumps(static))
            print(clip.name, file=sys.stderr, flush=True)
    thresholds = args.threshold or [crop.meta.zoom_threshold or 0.5]
    sustain = crop.meta.zoom_sustain_s or 0.0
    report: dict = {}
    k = (args.crops or [cfg.zoom.crops])[0]
    motion = {c.name: crop_max(blobs[c.name], RANKINGS["area"], k) for c in clips}
    score(report, f"motion K{k}", base, motion, cfg.post.smooth_window_s, sustain, thresholds, True)
    for n in range(1, PEAKS + 1):
        for ts in args.static_threshold or [0.0]:
            both = {c.name: [max(m, *(p if p >= ts else 0.0 for p in s[:n]))
                             for m, s in zip(motion[c.name], static[c.name])] for c in clips}
            name = f"motion K{k} + static N{n}" + (f" ts{ts:.2f}" if ts else "")
            score(report, name, base, both, cfg.post.smooth_window_s, sustain, thresholds, True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
