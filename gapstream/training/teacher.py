"""Pseudo-labels for unlabelled real footage, from an offline COCO detector ("teacher").

A training-data tool, never part of the run time: a stock YOLOv8n TFLite file (80 COCO
classes, the person is class 0) scores sampled frames of each video, and each confident
sample becomes a short ``labels.json`` segment. On the train split of the shared clips
(human labels) the teacher's confident "person" was wrong in 2 of 198 samples, but its
"no person" was wrong in 80 of 324 (legs at the frame edge, persons cut by the frame, top-down
views): a wrong "no person" would teach the student to miss exactly those. So:

- videos in ``VIDEOS/noperson/`` were checked by eye to show nobody; their samples are
  "no person" unless the teacher sees a person-like box (then left out);
- in every other video only confident "person" samples are kept.

The output is the ``labels.json`` layout of :mod:`.clips`, with whole sources held out as
``val`` so the decision rule can be checked on real frames of sources no training frame
comes from.

    python -m gapstream.training.teacher --model data/teacher/yolov8n_int8.tflite \\
        --videos data/footage_extra --out data/footage_extra/labels.json
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class TeacherRule:
    """How a teacher score becomes a label (chosen on the train split of the shared clips)."""

    person_at: float = 0.5  # best person-box confidence at or above this: person
    empty_below: float = 0.25  # in a checked person-free video, below this: no person
    step_s: float = 0.5  # one sample every step_s seconds
    max_s: float = 90.0  # only the first max_s seconds of a video


class YoloTeacher:
    """A YOLOv8 TFLite detector with float input (N, S, S, 3) in 0..1 and output (N, 84, A)."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        from ..runtime import make_interpreter

        self._it = make_interpreter(str(path), threads)
        self._it.allocate_tensors()
        self._inp = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self.size = int(self._inp["shape"][1])

    def _rows(self, rgb: np.ndarray, classes: tuple[int, ...] = (0,)) -> tuple[np.ndarray, float]:
        """``(rows (A, 5) of cx, cy, w, h in letterbox units 0..1 and the best confidence of the COCO
        classes given (the person, 0, by default), scale)``: the frame letterboxed to the model's
        square input, top-left aligned."""
        h, w = rgb.shape[:2]
        s = self.size / max(h, w)
        im = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        canvas = np.full((self.size, self.size, 3), 114, np.uint8)
        canvas[: im.shape[0], : im.shape[1]] = im
        self._it.set_tensor(self._inp["index"], canvas[None].astype(np.float32) / 255.0)
        self._it.invoke()
        out = self._it.get_tensor(self._out["index"])[0]
        conf = out[[4 + c for c in classes]].max(axis=0)
        return np.concatenate([out[:4], conf[None]]).T, s

    def person_score(self, rgb: np.ndarray) -> float:
        """The best person-box confidence in a frame (letterboxed to the model's square input)."""
        return float(self._rows(rgb)[0][:, 4].max())

    def person_boxes(self, rgb: np.ndarray, min_conf: float = 0.05, iou: float = 0.5) -> np.ndarray:
        """Person boxes ``(K, 5)`` of a frame: see :func:`boxes_from_rows`."""
        return self.class_boxes(rgb, (0,), min_conf, iou)

    def class_boxes(self, rgb: np.ndarray, classes: tuple[int, ...], min_conf: float = 0.05,
                    iou: float = 0.5) -> np.ndarray:
        """Boxes ``(K, 5)`` of any of the COCO ``classes`` (class-agnostic suppression)."""
        rows, s = self._rows(rgb, classes)
        return boxes_from_rows(rows, self.size / s, rgb.shape[:2], min_conf, iou)


def boxes_from_rows(rows: np.ndarray, to_px: float, hw: tuple[int, int], min_conf: float = 0.05,
                    iou: float = 0.5) -> np.ndarray:
    """Person boxes ``(K, 5)``: x0, y0, x1, y1 in frame pixels (clipped) and the confidence, at or
    above ``min_conf``, after non-maximum suppression, best first. ``rows`` are the detector's
    ``(A, 5)`` cx, cy, w, h in letterbox units and the person confidence; ``to_px`` turns a
    letterbox unit into frame pixels."""
    rows = rows[rows[:, 4] >= min_conf]
    if not len(rows):
        return np.zeros((0, 5), np.float32)
    cx, cy, bw, bh = (rows[:, :4] * to_px).T
    xywh = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1)
    keep = np.array(cv2.dnn.NMSBoxes(xywh.tolist(), rows[:, 4].tolist(), min_conf, iou), int).reshape(-1)
    h, w = hw
    x0, y0 = xywh[keep, 0], xywh[keep, 1]
    x1, y1 = x0 + xywh[keep, 2], y0 + xywh[keep, 3]
    out = np.stack([np.clip(x0, 0, w), np.clip(y0, 0, h), np.clip(x1, 0, w), np.clip(y1, 0, h),
                    rows[keep, 4]], 1).astype(np.float32)
    return out[np.argsort(-out[:, 4])]


def score_video(path: Path, teacher: YoloTeacher, rule: TeacherRule
                ) -> tuple[list[tuple[float, float]], dict]:
    """``([(time, person score)], stream facts)`` for one sample every ``rule.step_s`` seconds."""
    import av

    scores: list[tuple[float, float]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        facts = {"fps": float(stream.average_rate or 0), "width": stream.codec_context.width,
                 "height": stream.codec_context.height}
        next_t = 0.0
        last = 0.0
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            last = t
            if t > rule.max_s:
                break
            if t < next_t:
                continue
            next_t = t + rule.step_s
            scores.append((t, teacher.person_score(frame.to_ndarray(format="rgb24"))))
    facts["duration_s"] = round(min(last, rule.max_s), 3)
    return scores, facts


def segments_from_scores(scores: list[tuple[float, float]], rule: TeacherRule, person_free: bool
                         ) -> list[dict]:
    """One segment per kept sample (``step_s`` wide, centred on it), equal neighbours merged;
    left-out samples leave a gap, which :meth:`.clips.Clip.label_at` reads as no label.

    ``person_free``: the video was checked to show nobody, so low scores are "no person";
    otherwise only confident "person" samples are kept."""
    out: list[dict] = []
    half = rule.step_s / 2
    for t, score in scores:
        if person_free and score < rule.empty_below:
            person = False
        elif not person_free and score >= rule.person_at:
            person = True
        else:
            continue
        start, end = max(0.0, t - half), t + half
        if out and out[-1]["person"] == person and abs(out[-1]["end"] - start) < 1e-6:
            out[-1]["end"] = round(end, 3)
        else:
            out.append({"start": round(start, 3), "end": round(end, 3), "person": person})
    return out


def source_of(path: Path) -> str:
    """The source of a collected video: its file name up to ``__`` (``<source>__<stem>.mp4``)."""
    return path.stem.split("__", 1)[0]


def split_of(source: str, val_share: int = 4) -> str:
    """Whole sources are held out: about one in ``val_share`` (by a stable hash of its name)."""
    return "val" if zlib.crc32(source.encode()) % val_share == 0 else "train"


def videos_in(folder: Path) -> Iterator[Path]:
    """Videos in ``folder`` and in its ``noperson/`` subfolder."""
    for sub in (folder, folder / "noperson"):
        if sub.is_dir():
            yield from sorted(p for p in sub.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def cached_scores(path: Path, teacher: YoloTeacher, rule: TeacherRule, cache: Path
                  ) -> tuple[list[tuple[float, float]], dict]:
    """:func:`score_video`, kept in ``cache`` by file name and size (moving a video into
    ``noperson/`` does not score it again)."""
    key = cache / f"{path.name}.{path.stat().st_size}.{rule.step_s}.{rule.max_s}.json"
    if key.is_file():
        doc = json.loads(key.read_text())
        return [(float(t), float(s)) for t, s in doc["scores"]], doc["facts"]
    scores, facts = score_video(path, teacher, rule)
    cache.mkdir(parents=True, exist_ok=True)
    key.write_text(json.dumps({"scores": scores, "facts": facts}))
    return scores, facts


def label_folder(folder: Path, teacher: YoloTeacher, rule: TeacherRule, cache: Path) -> dict:
    """The ``labels.json`` document for every video in ``folder``."""
    clips = []
    for path in videos_in(folder):
        person_free = path.parent.name == "noperson"
        scores, facts = cached_scores(path, teacher, rule, cache)
        segments = segments_from_scores(scores, rule, person_free)
        kept = sum(round((s["end"] - s["start"]) / rule.step_s) for s in segments)
        print(f"{path.relative_to(folder)}: {len(scores)} samples, {kept} kept as "
              f"{'no person' if person_free else 'person'}", flush=True)
        clips.append({"file": str(path.relative_to(folder)), "split": split_of(source_of(path)), **facts,
                      "source": source_of(path), "segments": segments,
                      "teacher_scores": [[round(t, 3), round(s, 3)] for t, s in scores]})
    return {"labelled_by": "teacher", "rule": rule.__dict__, "clips": clips}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gapstream.training.teacher",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--model", required=True, help="YOLOv8 TFLite file (COCO classes, float input)")
    p.add_argument("--videos", required=True, help="folder of videos named <source>__<name>.<ext>")
    p.add_argument("--out", required=True, help="labels.json to write (never over a video)")
    p.add_argument("--person-at", type=float, default=TeacherRule.person_at)
    p.add_argument("--empty-below", type=float, default=TeacherRule.empty_below)
    p.add_argument("--step", type=float, default=TeacherRule.step_s, help="seconds between samples")
    p.add_argument("--max-seconds", type=float, default=TeacherRule.max_s)
    p.add_argument("--cache", help="where teacher scores are kept (default: OUT's folder/.teacher-cache)")
    args = p.parse_args(argv)
    rule = TeacherRule(args.person_at, args.empty_below, args.step, args.max_seconds)
    cache = Path(args.cache) if args.cache else Path(args.out).parent / ".teacher-cache"
    doc = label_folder(Path(args.videos), YoloTeacher(args.model), rule, cache)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
