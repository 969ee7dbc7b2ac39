"""Models at matched false-positive budgets on held-out footage, through the default run time.

Runs each model over every clip of the given labelled folders' ``--split`` through the run-time
pipeline (``Pipeline(...).run()``, the code of ``gapstream run`` and ``eval``; the config's motion
gate and score smoothing included), keeps each frame's (time, label, person probability), then
reports per model:

* R2 / R5: the mean per-clip recall at the model's own threshold for at most 2 % / 5 % pooled
  false positives on the empty frames (``gapstream eval --tune-decision``'s rule);
* recall and pooled false positives (P50) at 0.5;
* the largest rise of one empty clip's false positives at the model's 5 % threshold over the
  first model's at its own (the first model is the baseline);
* R2e / R5e (stop 19): the same with the threshold chosen on the empty clips' frames only, as the
  issue's target is per empty clip: a person clip's short person-free stretch (a person just out
  of view, an ambiguous driver) no longer spends the budget. With the empty clip that is worst at
  that threshold.

Stop 20: ``--zoom-meta NAME=TFLITE`` writes a zoom dump's R2e threshold into its crop model's
metadata (``zoom_threshold``, which the run time's zoom decides at); ``--two-thresholds BASE+ZOOM``
reports a zoom dump with the whole frame held at 0.5 and only the crops' threshold chosen;
``--sustain NAME=S`` reports NAME with each probability the minimum over the last S seconds (the
run time's ``post.zoom_sustain_s``; ``--zoom-meta NAMEsS=TFLITE`` stores both).

Stop 13's table (``benchmarks/results/stop13.md``); never run it on the eval split::

    python benchmarks/operating_points.py --clips data/footage_target --clips data/footage_target_c \\
        --clips data/footage_extra --split val --model A=models/gapstream_person_int8.tflite \\
        --model E3=runs/ens-e3/models/gapstream_person_int8.tflite --out benchmarks/results/stop13_val.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.config import PipelineConfig, load_config  # noqa: E402
from gapstream.errors import GapstreamError  # noqa: E402
from gapstream.meta import load_meta, save_meta  # noqa: E402
from gapstream.pipeline import Pipeline  # noqa: E402
from gapstream.smoothing import ScoreHistory  # noqa: E402
from gapstream.training.clips import folders, load_clips  # noqa: E402
from gapstream.training.footage import Score, pct, summary, tune_decision  # noqa: E402

Dump = dict[str, list[tuple[float, int, float]]]


def frames(clips: list, model: str, cfg: PipelineConfig) -> Dump:
    """Each clip's (pts, label, person probability) per frame; label -1 where no label applies.
    The whole frame's model alone, as in every stop's dumps, unless the config sets ``zoom.enabled``
    (the zoom, on by default with the shipped models since stop 22, is screened by ``zoom.py``)."""
    if cfg.zoom.enabled is None:
        cfg = replace(cfg, zoom=replace(cfg.zoom, enabled=False))
    out = {}
    for clip in clips:
        rows = []
        for r in Pipeline(str(clip.path), model, cfg).run():
            label = clip.label_at(r.pts, 0.0)
            rows.append((r.pts, -1 if label is None else int(label), r.person_prob))
        out[clip.name] = rows
        print(clip.name, len(rows), file=sys.stderr, flush=True)
    return out


def scores(dump: Dump, threshold: float = 0.5) -> list[Score]:
    """Per-clip counts at ``threshold``, with the probabilities :func:`tune_decision` needs."""
    out = []
    for name, rows in dump.items():
        p = np.array([q for _, _, q in rows])
        label = np.array([lab for _, lab, _ in rows])
        decisive = np.where(p >= 0.5, p, 0.0)  # the argmax must be the person too
        person, empty = decisive[label == 1], decisive[label == 0]
        out.append(Score(name, "val", len(rows), len(person), len(empty), int((person >= threshold).sum()),
                         int((empty >= threshold).sum()), person_probs=person.tolist(),
                         empty_probs=empty.tolist()))
    return out


def empty_clips_only(s: list[Score]) -> list[Score]:
    """``s`` with the person clips' person-free frames left out of the false-positive counts."""
    return [replace(x, empty_frames=0, false_positives=0, empty_probs=[]) if x.person_frames else x
            for x in s]


def operating_points(dump: Dump) -> dict:
    """R2, R5 and their thresholds, figures at 0.5, each empty clip's FP at the 5 % threshold, and
    R2e / R5e with the worst empty clip at their thresholds."""
    s = scores(dump)
    half, t2, t5 = summary(s), tune_decision(s, 0.02), tune_decision(s, 0.05)
    at5 = scores(dump, t5["threshold"])
    out = {"R2": t2["mean_recall"], "t2": t2["threshold"], "reached2": t2["reached"],
           "R5": t5["mean_recall"], "t5": t5["threshold"], "reached5": t5["reached"],
           "recall_0.5": half["mean_recall"], "P50": half["frame_fp_rate"],
           "fp_t5": {x.name: x.fp_rate for x in at5 if x.empty_frames}}
    for budget in (2, 5):
        te = tune_decision(empty_clips_only(s), budget / 100)
        worst = max((x for x in empty_clips_only(scores(dump, te["threshold"])) if x.empty_frames),
                    key=lambda x: x.fp_rate or 0.0)
        out |= {f"R{budget}e": te["mean_recall"], f"t{budget}e": te["threshold"],
                f"reached{budget}e": te["reached"], f"worst{budget}e": [worst.name, worst.fp_rate]}
    return out


def two_thresholds(base: Dump, zoomed: Dump, base_threshold: float = 0.5) -> Dump:
    """``zoomed`` (max of the whole frame's and the crops' probabilities, ``benchmarks/zoom.py``)
    decided with the whole frame (``base``, the same frames) at ``base_threshold`` and the crops at
    any threshold t >= it: a frame scores 1 where the whole frame reaches ``base_threshold``, so that
    "score >= t" is "whole frame >= base_threshold or combined >= t" (stop 20's rule 20b)."""
    out = {}
    for clip, rows in zoomed.items():
        if [t for t, _, _ in rows] != [t for t, _, _ in base[clip]]:
            raise ValueError(f"{clip}: the two dumps hold different frames")
        out[clip] = [(t, lab, 1.0 if b >= base_threshold else z)
                     for (t, lab, z), (_, _, b) in zip(rows, base[clip])]
    return out


def sustained(dump: Dump, window_s: float) -> Dump:
    """Each frame's probability as the minimum over the last ``window_s`` seconds, as the run
    time's ``zoom.sustain_s`` decides (smoothing.ScoreHistory "min")."""
    out = {}
    for clip, rows in dump.items():
        history = ScoreHistory(window_s, "min")
        out[clip] = [(t, lab, history.update(t, p)) for t, lab, p in rows]
    return out


def worst_rise(fp: dict[str, float], base: dict[str, float]) -> float:
    """The largest rise of one empty clip's false-positive rate over the baseline's."""
    return max(fp[c] - base[c] for c in base)


def line(name: str, r: dict, base: dict[str, float]) -> str:
    """One model's operating points as a line, its worst rise over the baseline's ``fp_t5``."""
    rise = worst_rise(r["fp_t5"], base)
    return (f"{name}: R2 {pct(r['R2'])} (t2 {r['t2']}{'' if r['reached2'] else ', not reached'}), "
            f"R5 {pct(r['R5'])} (t5 {r['t5']}), recall at 0.5 {pct(r['recall_0.5'])}, "
            f"P50 {pct(r['P50'])}, worst empty-clip rise at t5 {100 * rise:+.1f}; "
            f"R2e {pct(r['R2e'])} (t2e {r['t2e']}, worst {r['worst2e'][0]} {pct(r['worst2e'][1])}), "
            f"R5e {pct(r['R5e'])} (t5e {r['t5e']})")


def publish(report: dict[str, dict], out: str | None) -> None:
    """Print one line per entry against the first entry as the baseline; write the JSON if asked."""
    base = next(iter(report.values()))["fp_t5"]
    for name, r in report.items():
        print(line(name, r, base))
    if out:
        Path(out).write_text(json.dumps(report, indent=1) + "\n")


def footage_parser(description: str, splits: tuple[str, ...] = ("val", "train")) -> argparse.ArgumentParser:
    """A parser with the options the held-out-footage benchmarks share: --clips, --split, --config, --out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--clips", action="append", required=True)
    ap.add_argument("--split", default="val", choices=list(splits))
    ap.add_argument("--config", help="pipeline config (default: configs/default.yaml's defaults)")
    ap.add_argument("--out")
    return ap


def footage(args: argparse.Namespace) -> tuple[list, PipelineConfig]:
    """The labelled clips of ``--clips`` in ``--split``, and the pipeline config of ``--config``."""
    return [c for root in folders(args.clips) for c in load_clips(root, args.split)], load_config(args.config)


def main() -> None:
    ap = footage_parser(__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=TFLITE",
                    help="the first is the baseline (repeatable)")
    ap.add_argument("--dumps", metavar="DIR",
                    help="keep each model's per-frame probabilities in DIR/NAME.json and reuse them when "
                         "there, so a model added later does not re-run the others")
    ap.add_argument("--zoom-meta", action="append", default=[], metavar="NAME=TFLITE",
                    help="write NAME's 2 %% empty-clip threshold (t2e) into TFLITE's metadata as its "
                         "zoom_threshold (and a --sustain entry's window as its zoom_sustain_s): NAME is "
                         "a zoom dump (benchmarks/zoom.py) with TFLITE on the crops")
    ap.add_argument("--two-thresholds", action="append", default=[], metavar="BASE+ZOOM",
                    help="also report the zoom dump ZOOM with the whole frame (the dump BASE) decided at "
                         "0.5 and the crops at the threshold chosen (stop 20's rule 20b; both with --model)")
    ap.add_argument("--sustain", action="append", default=[], metavar="NAME=S",
                    help="also report NAME's dump with each probability the minimum over the last S seconds "
                         "(NAMEsS; the run time's post.zoom_sustain_s, stop 20's rule 20c)")
    args = ap.parse_args()
    names = {spec.partition("=")[0] for spec in args.model}
    windows: dict[str, tuple[str, float]] = {}  # each --sustain entry: its dump's name and seconds
    for spec in args.sustain:
        name, _, window = spec.partition("=")
        if name not in names:
            raise GapstreamError(f"--sustain {spec}: pass {name} with --model")
        try:
            windows[f"{name}s{window}"] = (name, float(window))
        except ValueError:
            raise GapstreamError(f"--sustain {spec}: S must be a number of seconds") from None
    names |= set(windows)
    for spec in args.two_thresholds:  # checked before any clip runs
        if "+" not in spec or not set(spec.split("+", 1)) <= names:
            raise GapstreamError(f"--two-thresholds {spec}: pass both models with --model")
    for spec in args.zoom_meta:
        if spec.partition("=")[0] not in names:
            raise GapstreamError(f"--zoom-meta {spec}: pass {spec.partition('=')[0]} with --model "
                                 "(its metadata is left as it was)")
    clips, cfg = footage(args)
    report, dumps = {}, {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        dumps[name] = cached_frames(clips, path, cfg, args.dumps, name)
        report[name] = operating_points(dumps[name])
    for key, (name, seconds) in windows.items():
        dumps[key] = sustained(dumps[name], seconds)
        report[key] = operating_points(dumps[key])
    for spec in args.two_thresholds:
        base, _, zoomed = spec.partition("+")
        try:
            report[f"{zoomed}2t"] = operating_points(two_thresholds(dumps[base], dumps[zoomed]))
        except ValueError as exc:
            raise GapstreamError(f"--two-thresholds {spec}: {exc}") from None
    publish(report, args.out)
    for spec in args.zoom_meta:
        name, _, crop = spec.partition("=")
        if not report[name]["reached2e"]:
            raise GapstreamError(f"--zoom-meta {spec}: no threshold keeps {name} within 2 % false "
                                 "positives on the empty clips (its metadata is left as it was)")
        meta = load_meta(crop)
        meta.zoom_threshold = float(report[name]["t2e"])
        meta.zoom_sustain_s = windows[name][1] if name in windows else None  # a --sustain entry's window
        save_meta(meta, crop)
        print(f"{crop}: zoom threshold {meta.zoom_threshold}, sustained {meta.zoom_sustain_s or 0} s, "
              "written to its metadata")


def cached_frames(clips: list, model: str, cfg: PipelineConfig, dumps: str | None, name: str) -> Dump:
    """:func:`frames`, read from ``dumps/name.json`` when a dump of the same clips is there."""
    path = Path(dumps) / f"{name}.json" if dumps else None
    if path is not None and path.is_file():
        dump = {k: [tuple(r) for r in v] for k, v in json.loads(path.read_text())["frames"].items()}
        if sorted(dump) == sorted(c.name for c in clips):
            return dump
    dump = frames(clips, model, cfg)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"model": model, "frames": dump}))
    return dump


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
