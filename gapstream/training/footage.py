"""Evaluate on real footage: frame-level recall on person seconds, false positives on empty ones.

Every clip (``labels.json`` layout, see :mod:`.clips`) and every image folder runs through
:class:`gapstream.Pipeline`, the code path of ``gapstream run``: the same input sizing,
decision (``post.score_threshold`` on the person probability) and box rule. A frame counts
as a person frame when its label (from the per-second segments) says so; frames within
``margin`` seconds of a change of label are not scored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..credentials import redact_text
from ..metrics import bootstrap_mean_ci
from ..results import Result
from .clips import Clip, folders, load_clips

log = logging.getLogger(__name__)


@dataclass
class Score:
    """Frame counts of one clip or image folder for one model."""

    name: str
    split: str
    frames: int = 0
    person_frames: int = 0
    empty_frames: int = 0
    hits: int = 0  # person frames the model flags
    false_positives: int = 0  # empty frames the model flags
    seconds: float = 0.0
    # Person probabilities of the labelled frames, for choosing a decision threshold (not in the JSON).
    person_probs: list[float] = field(default_factory=list, repr=False)
    empty_probs: list[float] = field(default_factory=list, repr=False)

    @property
    def recall(self) -> float | None:
        return self.hits / self.person_frames if self.person_frames else None

    @property
    def fp_rate(self) -> float | None:
        return self.false_positives / self.empty_frames if self.empty_frames else None

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("person_probs", "empty_probs")}
        return {**d, "recall": self.recall, "fp_rate": self.fp_rate}


def _score(uri: str, name: str, split: str, label_at: object, model: Path, config: PipelineConfig) -> Score:
    from ..pipeline import Pipeline

    score = Score(name, split)
    t0 = time.monotonic()
    for result in Pipeline(uri, str(model), config).run():
        label = label_at(result.pts)  # type: ignore[operator]
        score.frames += 1
        if label is None:
            continue
        if label:
            score.person_frames += 1
            score.hits += bool(result.is_person)
            score.person_probs.append(_decisive(result))
        else:
            score.empty_frames += 1
            score.false_positives += bool(result.is_person)
            score.empty_probs.append(_decisive(result))
    score.seconds = round(time.monotonic() - t0, 2)
    return score


def _decisive(result: Result) -> float:
    """The person probability, or 0 when another class wins (the decision also needs the argmax)."""
    return result.person_prob if result.person_prob >= float(np.max(result.probs)) else 0.0


def score_clip(clip: Clip, model: Path, config: PipelineConfig, margin: float = 0.0) -> Score:
    """Run ``model`` over every frame of ``clip`` and count against its labels."""
    return _score(str(clip.path), clip.name, clip.split, lambda t: clip.label_at(t, margin), model, config)


def score_images(folder: str | Path, person: bool, model: Path, config: PipelineConfig) -> Score:
    """Run ``model`` over an image folder whose images all have the label ``person``."""
    folder = Path(folder)
    name = f"{folder.parent.name}/{folder.name}"
    return _score(str(folder), name, "images", lambda _t: person, model, config)


def summary(scores: list[Score]) -> dict:
    """Mean per-clip recall over clips with person frames (and a 90 % bootstrap interval over the
    clips, :func:`metrics.bootstrap_mean_ci`), worst clip, pooled frame counts, and the worst
    false-positive rate over clips with empty frames."""
    recalls = [s.recall for s in scores if s.recall is not None]
    fps = [s.fp_rate for s in scores if s.fp_rate is not None]
    person = sum(s.person_frames for s in scores)
    empty = sum(s.empty_frames for s in scores)
    return {
        "mean_recall": sum(recalls) / len(recalls) if recalls else None,
        "mean_recall_ci90": bootstrap_mean_ci(recalls),
        "min_recall": min(recalls) if recalls else None,
        "frame_recall": sum(s.hits for s in scores) / person if person else None,
        "max_fp_rate": max(fps) if fps else None,
        "frame_fp_rate": sum(s.false_positives for s in scores) / empty if empty else None,
        "person_frames": person,
        "empty_frames": empty,
    }


#: Decision thresholds tried by :func:`tune_decision`: the argmax already needs 0.5.
DECISION_GRID = tuple(round(0.5 + 0.005 * i, 3) for i in range(100)) + (0.999,)


def tune_decision(scores: list[Score], max_fp: float) -> dict:
    """The smallest decision threshold whose pooled false-positive rate over the empty frames of
    ``scores`` is at most ``max_fp``, with the recall it leaves on their person frames.

    Only empty frames choose it; the person frames are scored after, so that the recall reported
    is not tuned on. When no threshold of the grid gets there, the highest is returned with
    ``reached`` false: the model is confidently wrong on more than ``max_fp`` of the empty frames."""
    empty = np.array([p for s in scores for p in s.empty_probs])
    if not len(empty):
        raise ValueError("no empty (person-free) frames to tune a decision threshold on")
    t = next((t for t in DECISION_GRID if (empty >= t).mean() <= max_fp), None)
    reached = t is not None
    t = DECISION_GRID[-1] if t is None else t
    # The same counts as the run's, as if it had run at threshold t: summary() does the rest.
    at_t = [replace(s, person_frames=len(s.person_probs), empty_frames=len(s.empty_probs),
                    hits=sum(p >= t for p in s.person_probs),
                    false_positives=sum(p >= t for p in s.empty_probs)) for s in scores]
    sm = summary(at_t)
    return {"threshold": t, "max_fp": max_fp, "reached": reached,
            **{k: sm[k] for k in ("frame_fp_rate", "max_fp_rate", "mean_recall", "frame_recall")}}


def model_labels(models: list[Path]) -> list[str]:
    """Report keys: each model's file name, or its path where two models share a name."""
    names = [m.name for m in models]
    return [str(m) if names.count(m.name) > 1 else m.name for m in models]


def zoom_model(model: Path, config: PipelineConfig) -> str | None:
    """The crop model's file name where the run time zooms with ``model`` as its whole-frame model,
    else None: by default only a shipped person model zooms (:func:`pipeline.zoom_on`), so a
    candidate is compared without the zoom unless the config turns it on."""
    from ..paths import DEFAULT_ZOOM_MODEL
    from ..pipeline import zoom_on

    if not zoom_on(replace(config, model=replace(config.model, path=str(model)))):
        return None
    return Path(config.zoom.model or DEFAULT_ZOOM_MODEL).name


def evaluate_footage(models: list[Path], clips_root: str | Path | Sequence[str | Path] | None = None,
                     split: str = "eval", images: list[tuple[Path, bool]] | None = None,
                     config: PipelineConfig | None = None, margin: float = 0.0,
                     tune_fp: float | None = None) -> dict:
    """Scores of each model on the clips of ``split`` of one labelled folder or several, and on
    labelled image folders; with ``tune_fp``, also each model's decision threshold for that
    false-positive rate on all the clips' empty frames (:func:`tune_decision`)."""
    cfg = config or PipelineConfig()
    roots = folders(clips_root)
    clips = [clip for root in roots for clip in load_clips(root, split)]
    report: dict = {"split": split if roots else None, "clips_root": ", ".join(map(str, roots)),
                    "margin_s": margin, "models": {}}
    for model, label in zip(models, model_labels(models)):
        scores = []
        for clip in clips:
            scores.append(score_clip(clip, model, cfg, margin))
            log.info("%s %s: recall %s, false positives %s", model.name, clip.name,
                     pct(scores[-1].recall), pct(scores[-1].fp_rate))
        folder_scores = [score_images(folder, person, model, cfg) for folder, person in images or []]
        report["models"][label] = {
            "path": str(model),
            "zoom": zoom_model(model, cfg),
            "clips": [s.to_json() for s in scores],
            "clips_summary": summary(scores),
            "images": [s.to_json() for s in folder_scores],
        }
        if tune_fp is not None:
            report["models"][label]["decision"] = tune_decision(scores, tune_fp)
    return report


def pct(v: float | None) -> str:
    """A rate as a percentage; n/a where nothing was counted (no person clip, say)."""
    return "n/a" if v is None else f"{100 * v:.1f} %"


def render_markdown(report: dict) -> str:
    """Per-clip and per-folder tables, one per model, and the summary lines."""
    lines = [f"# Real footage: {report['clips_root'] or 'image folders'}"
             + (f" (split {report['split']})" if report["split"] else ""), ""]
    for name, r in report["models"].items():
        zoom = r.get("zoom")
        lines += [f"## {name}", "",
                  f"Run time: the zoom on, crop model {zoom}." if zoom else
                  "Run time: the zoom off (by default it runs only with a shipped person model; "
                  "`zoom.enabled: true` turns it on).", "",
                  "| clip / folder | split | frames | person frames | recall | "
                  "empty frames | false positives |", "|---|---|---:|---:|---:|---:|---:|"]
        for s in r["clips"] + r["images"]:
            lines.append(f"| {s['name']} | {s['split']} | {s['frames']} | {s['person_frames']} | "
                         f"{pct(s['recall'])} | {s['empty_frames']} | {pct(s['fp_rate'])} |")
        sm = r["clips_summary"]
        if sm["mean_recall"] is not None or sm["max_fp_rate"] is not None:
            ci = sm.get("mean_recall_ci90")
            spread = f", 90 % interval over the clips {pct(ci[0])}-{pct(ci[1])}" if ci else ""
            lines += ["", f"Clips: mean recall {pct(sm['mean_recall'])}{spread} "
                      f"(worst clip {pct(sm['min_recall'])}, all person frames {pct(sm['frame_recall'])}); "
                      "false positives: worst clip "
                      f"{pct(sm['max_fp_rate'])}, all empty frames {pct(sm['frame_fp_rate'])}."]
        d = r.get("decision")
        if d:
            lead = (f"Decision threshold for at most {pct(d['max_fp'])} false positives on these empty "
                    f"frames: {d['threshold']}" if d["reached"] else
                    f"**No decision threshold reaches at most {pct(d['max_fp'])} false positives on these "
                    f"empty frames**; the highest tried: {d['threshold']}")
            lines += ["", f"{lead} (false positives {pct(d['frame_fp_rate'])}, "
                      f"worst clip {pct(d['max_fp_rate'])}); then mean recall {pct(d['mean_recall'])}, "
                      f"all person frames {pct(d['frame_recall'])}."]
        lines.append("")
    return redact_text("\n".join(lines))
