"""The run time's boxes on real footage against the YOLOv8n teacher's person boxes.

``gapstream run CLIP --json`` (the default run time: zoom, motion gate, smoothing; or ``--config``)
on every ``val`` clip with a person of the given folders; then, on every ``--every``-th frame where
the teacher finds a person at confidence >= 0.5, the frame's JSON boxes are matched to the
teacher's boxes at >= 0.5: CorLoc (the top-scoring box at IoU >= 0.5 with a teacher box) and
AP@0.5 over the frames the run decided "person", for all of them and for two halves of the clips
(alternately, in order: half A chooses, half B reports; stop 30's rule 30d). ``--repo`` runs
another checkout (a ``git worktree``) with this interpreter, to compare commits::

    python benchmarks/runtime_boxes.py --clips data/footage_target data/footage_target_c data/footage_extra
    python benchmarks/runtime_boxes.py --clips ... --repo /tmp/wt-before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.detections import Detections  # noqa: E402
from gapstream.errors import DataError  # noqa: E402
from gapstream.metrics import average_precision, corloc  # noqa: E402
from gapstream.training.clips import Clip, load_clips  # noqa: E402


def teacher_boxes(clip: Clip, teacher_path: str, every: int, cache: Path) -> dict[int, np.ndarray]:
    """Frame index -> the teacher's person boxes (>= 0.5) on every ``every``-th frame with any."""
    out = cache / f"{clip.path.parent.name}__{clip.path.stem}_every{every}.npz"
    if out.is_file():
        with np.load(out) as z:
            return {int(k[1:]): z[k] for k in z.files}
    import av

    from gapstream.training.teacher import YoloTeacher

    teacher = YoloTeacher(teacher_path)
    found: dict[int, np.ndarray] = {}
    with av.open(str(clip.path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                boxes = teacher.person_boxes(frame.to_ndarray(format="rgb24"), min_conf=0.5)
                if len(boxes):
                    found[i] = boxes[:, :4].astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, **{f"f{k}": v for k, v in found.items()})
    return found


def run_boxes(clip: Clip, repo: Path, config: str | None, workdir: Path
              ) -> dict[int, tuple[bool, Detections]]:
    """Frame index -> (person?, boxes) of ``gapstream run`` from ``repo`` on ``clip``."""
    out = workdir / f"{clip.path.stem}.jsonl"
    cmd = [sys.executable, "-m", "gapstream", "run", str(clip.path.resolve()), "--json", str(out)]
    if config:
        cmd += ["--config", str(Path(config).resolve())]
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"gapstream run failed on {clip.name}: {proc.stderr.strip()[-300:]}")
    frames = {}
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        boxes = rec.get("boxes", [])
        xyxy = np.array([b["box"] for b in boxes], np.float32).reshape(-1, 4)
        scores = np.array([b["score"] for b in boxes], np.float32)
        frames[int(rec["frame"])] = (bool(rec["person"]), Detections(xyxy, scores))
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", nargs="+", required=True, help="clip folders (labels.json layout)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--teacher", default="data/teacher/yolov8n_int8.tflite")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--config", help="pipeline config for the runs")
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                    help="checkout whose gapstream runs (default: this one)")
    ap.add_argument("--cache", default="data/teacher/boxes_cache", help="the teacher's boxes, per clip")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    # Per half: the clips with a person alternate between A (1st, 3rd, ...) and B (2nd, 4th, ...).
    scored: dict[str, tuple[list[Detections], list[np.ndarray], list[int]]] = {
        h: ([], [], [0, 0]) for h in ("A", "B")}
    with tempfile.TemporaryDirectory() as tmp:
        index = 0
        for root in args.clips:
            for clip in load_clips(root, args.split):
                if not any(s.person for s in clip.segments):
                    continue
                half = "AB"[index % 2]
                index += 1
                truth = teacher_boxes(clip, args.teacher, args.every, Path(args.cache))
                if not truth:
                    continue
                ran = run_boxes(clip, repo, args.config, Path(tmp))
                dets, gts, counts = scored[half]
                for i, boxes in truth.items():
                    counts[0] += 1
                    is_person, det = ran.get(i, (False, Detections.empty()))
                    if is_person:
                        counts[1] += 1
                        dets.append(det)
                        gts.append(boxes)
                print(f"{clip.name} (half {half}): {len(truth)} teacher frames", file=sys.stderr, flush=True)
    print(f"repo {repo}; config {args.config or 'the defaults'}")
    halves = {**{f"half {h}": v for h, v in scored.items()},
              "all": (scored["A"][0] + scored["B"][0], scored["A"][1] + scored["B"][1],
                      [scored["A"][2][k] + scored["B"][2][k] for k in (0, 1)])}
    for name, (dets, gts, (frames, decided)) in halves.items():
        print(f"  {name}: {frames} frames with a teacher person, {decided} decided person; "
              f"CorLoc {100 * corloc(dets, gts):.1f} %, "
              f"AP@0.5 {100 * average_precision(dets, gts, 0.5):.1f} %, "
              f"{sum(len(d) for d in dets) / max(1, len(dets)):.2f} boxes a decided frame")

if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
