"""CorLoc and AP@0.5 of box rules (``post.*`` settings of :func:`gapstream.cam.localize`), on a
composite split or on real frames against the YOLOv8n teacher's person boxes.

Stop 30's rules 30a-30c (``benchmarks/results/stop30.md``). Each ``--rule`` is a comma-separated
list of ``PostConfig`` fields over the run time's defaults and the model's own threshold and box
factors (``box_scale=1x1.25``); with none, the defaults alone. ``--grid`` adds rule 30c's grid::

    python benchmarks/box_rules.py --data data/surveillance-composite --split Train --grid
    python benchmarks/box_rules.py --clips data/footage_target data/footage_target_c data/footage_extra \\
        --teacher data/teacher/yolov8n_int8.tflite --rule split_saddle=1,box_score=peak,box_scale=1x1

Composite: every annotated person image of the split. Clips: every 10th frame of their ``val``
clips, whole frame (no zoom, no motion gate) at the run-time input size; frames where the teacher
finds a person at confidence >= 0.5 are scored, with its boxes at >= 0.5 as the truth, over the
frames the model decides are person frames (on a composite, over every image, as ``gapstream
eval``). Choose on Train; Test is the record.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.cam import cam_batch, localize  # noqa: E402
from gapstream.config import PostConfig, load_config  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.meta import load_meta  # noqa: E402
from gapstream.metrics import average_precision, corloc  # noqa: E402
from gapstream.training.clips import load_clips  # noqa: E402
from gapstream.training.evaluate import annotated_person_images  # noqa: E402

Case = tuple[np.ndarray, np.ndarray, int, int, np.ndarray]  # cam, probs, width, height, GT boxes


def parse_rule(text: str, base: PostConfig) -> PostConfig:
    """``base`` with the ``key=value`` pairs of ``text`` (``box_scale=1x1.25``; other values as in
    YAML), typed and checked by the config's own rules (``load_config`` overrides)."""
    changes = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        # Commas separate the pairs, so box factors are written WxH instead of a YAML list.
        boxes = key.endswith("box_scale")
        changes[key] = [float(v) for v in value.split("x")] if boxes else yaml.safe_load(value)
    post = load_config(None, {f"post.{k}": v for k, v in changes.items()}).post
    return replace(base, **{k: getattr(post, k) for k in changes})


def grid_30c() -> list[str]:
    """Rule 30c's grid: saddle x peak floor x threshold x score x box height factor."""
    return [f"split_saddle={s},peak_floor={f},threshold={t},box_score={b},box_scale=1x{y}"
            for s, f, t, b, y in itertools.product((0.5, 0.6, 0.7, 0.8, 0.9), (0.3, 0.5), (0.25, 0.3),
                                                  ("peak", "mass"), (1.0, 1.25))]


def composite_cases(model: GapModel, root: Path, split: str) -> list[Case]:
    x, sizes, _, gts = annotated_person_images(root, split, tuple(model.meta.input_size))
    cases: list[Case] = []
    for i in range(0, len(x), 32):
        probs, maps = model.predict(x[i:i + 32])
        cams = cam_batch(maps, model.meta.dense_kernel, np.argmax(probs, axis=1))
        for k, (cam, p) in enumerate(zip(cams, probs), i):
            cases.append((cam, p, int(sizes[k][0]), int(sizes[k][1]), gts[k]))
    return cases


def teacher_cases(model_path: str, roots: list[str], teacher_path: str, every: int, cache: Path
                  ) -> list[Case]:
    import av
    from runtime_boxes import teacher_boxes

    meta = load_meta(model_path)
    models: dict[tuple[int, int], GapModel] = {}
    cases: list[Case] = []
    for root in roots:
        for clip in load_clips(root, "val"):
            truth = teacher_boxes(clip, teacher_path, every, cache)
            if not truth:
                continue
            with av.open(str(clip.path)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i not in truth:
                        continue
                    rgb = frame.to_ndarray(format="rgb24")
                    h, w = rgb.shape[:2]
                    size = meta.input_size_for(h, w)
                    if size not in models:
                        models[size] = GapModel(model_path, None, size)
                    gm = models[size]
                    probs, maps = gm.predict(gm.preprocess(rgb)[None])
                    cam = cam_batch(maps, gm.meta.dense_kernel, np.argmax(probs, axis=1))[0]
                    cases.append((cam, probs[0], w, h, truth[i]))
    return cases


def score(cases: list[Case], cfg: PostConfig, person_index: int, decided_only: bool
          ) -> tuple[float, float, int]:
    """(CorLoc, AP@0.5, frames decided person) of ``cfg``: over every case (a frame decided "no
    person" has no box, as in ``gapstream eval``), or over the decided ones only."""
    dets, gts, decided = [], [], 0
    for cam, probs, w, h, truth in cases:
        is_person, det = localize(cam, probs, person_index, w, h, cfg)
        decided += is_person
        if is_person or not decided_only:
            dets.append(det)
            gts.append(truth)
    return corloc(dets, gts), average_precision(dets, gts, 0.5), decided


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/surveillance-composite")
    ap.add_argument("--split", default="Train", choices=["Train", "Test"])
    ap.add_argument("--clips", nargs="*", help="clip folders: score their val clips against the teacher")
    ap.add_argument("--teacher", default="data/teacher/yolov8n_int8.tflite")
    ap.add_argument("--every", type=int, default=10, help="every n-th frame of a clip")
    ap.add_argument("--cache", default="data/teacher/boxes_cache", help="the teacher's boxes, per clip")
    ap.add_argument("--model", default="models/gapstream_person_int8.tflite")
    ap.add_argument("--rule", action="append", default=[], help="key=value,... over the defaults")
    ap.add_argument("--grid", action="store_true", help="add rule 30c's grid")
    args = ap.parse_args()
    model = GapModel(args.model)
    base = PostConfig(threshold=model.meta.cam_threshold, box_scale=list(model.meta.box_scale),
                      score_threshold=0.5)
    rules = (args.rule or [""]) + (grid_30c() if args.grid else [])
    if args.clips:
        cases = teacher_cases(args.model, args.clips, args.teacher, args.every, Path(args.cache))
        where = f"{len(cases)} frames of the val clips with a teacher person"
    else:
        cases = composite_cases(model, Path(args.data), args.split)
        where = f"{args.split}, {len(cases)} person images"
    results = [(rule, *score(cases, parse_rule(rule, base), model.meta.person_index, bool(args.clips)))
               for rule in rules]
    print(f"# {where}; model {args.model}")
    print("| rule (over the defaults) | CorLoc % | AP@0.5 % | frames decided person |\n|---|---:|---:|---:|")
    for rule, c, a, n in sorted(results, key=lambda r: (-r[1], -r[2])):
        print(f"| {rule or 'the defaults'} | {100 * c:.1f} | {100 * a:.1f} | {n} |")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
