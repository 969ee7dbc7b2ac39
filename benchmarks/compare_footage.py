"""Two ``gapstream eval --clips`` reports side by side: per clip, and the mean recall's change with a
paired bootstrap interval over the clips.

A rule that ships a change on a few points of validation recall should know how far the choice of
clips moves that difference (stop 23 shipped +2.5 points on V' that became -6.7 on the eval split).
The interval resamples the clips both reports share, each clip's recall difference kept whole
(``metrics.bootstrap_mean_ci`` on the differences)::

    python benchmarks/compare_footage.py BASE/footage.json NEW/footage.json [--base-model NAME]
        [--new-model NAME] [--out compare.md]

A report with one model needs no ``--*-model``. Exit status 0; the Markdown goes to stdout or ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.metrics import bootstrap_mean_ci  # noqa: E402
from gapstream.training.footage import pct  # noqa: E402


def clips_of(report: dict, model: str | None, path: str) -> dict[str, dict]:
    """The per-clip records of ``model`` (the only one when None) in a footage report, by name."""
    models = report["models"]
    if model is None:
        if len(models) != 1:
            raise SystemExit(f"gapstream: error: {path} has {len(models)} models ({', '.join(models)}): "
                             "name one with --base-model / --new-model")
        model = next(iter(models))
    if model not in models:
        raise SystemExit(f"gapstream: error: {path} has no model {model!r} ({', '.join(models)})")
    return {c["name"]: c for c in models[model]["clips"]}


def compare(base: dict[str, dict], new: dict[str, dict]) -> dict:
    """Per shared clip, both recalls and false-positive rates; the mean recall of each over the
    clips with person frames in both, the mean difference with its 90 % paired interval, and the
    largest rise of one clip's false positives."""
    shared = [n for n in base if n in new]
    if not shared:
        raise SystemExit("gapstream: error: the two reports share no clip")
    rows = [{"name": n, "base_recall": base[n]["recall"], "new_recall": new[n]["recall"],
             "base_fp": base[n]["fp_rate"], "new_fp": new[n]["fp_rate"]} for n in shared]
    person = [r for r in rows if r["base_recall"] is not None and r["new_recall"] is not None]
    diffs = [r["new_recall"] - r["base_recall"] for r in person]
    fp = [r for r in rows if r["base_fp"] is not None and r["new_fp"] is not None]
    worst = max(fp, key=lambda r: r["new_fp"] - r["base_fp"], default=None)
    return {
        "clips": rows,
        "person_clips": len(person),
        "base_mean_recall": sum(r["base_recall"] for r in person) / len(person) if person else None,
        "new_mean_recall": sum(r["new_recall"] for r in person) / len(person) if person else None,
        "mean_difference": sum(diffs) / len(diffs) if diffs else None,
        "difference_ci90": bootstrap_mean_ci(diffs),
        "worst_fp_rise": None if worst is None else {"name": worst["name"],
                                                     "points": worst["new_fp"] - worst["base_fp"]},
        "only_in_base": [n for n in base if n not in new],
        "only_in_new": [n for n in new if n not in base],
    }


def points(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f}"


def render(c: dict) -> str:
    """The comparison as Markdown: a per-clip table, then the summary lines."""
    lines = ["| clip | base recall | new recall | change (points) | base false pos. | new false pos. |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in c["clips"]:
        change = (None if r["base_recall"] is None or r["new_recall"] is None
                  else r["new_recall"] - r["base_recall"])
        lines.append(f"| {r['name']} | {pct(r['base_recall'])} | {pct(r['new_recall'])} | {points(change)} "
                     f"| {pct(r['base_fp'])} | {pct(r['new_fp'])} |")
    lines.append("")
    if c["mean_difference"] is not None:
        ci = c["difference_ci90"]
        spread = f"; 90 % paired interval over the clips {points(ci[0])} to {points(ci[1])}" if ci else ""
        lines.append(f"Mean recall over {c['person_clips']} person clips: {pct(c['base_mean_recall'])} -> "
                     f"{pct(c['new_mean_recall'])}, {points(c['mean_difference'])} points{spread}.")
    if c["worst_fp_rise"] is not None:
        w = c["worst_fp_rise"]
        lines.append(f"Largest false-positive change on one clip: {points(w['points'])} points "
                     f"({w['name']}).")
    for key, what in (("only_in_base", "only in the base report"), ("only_in_new", "only in the new report")):
        if c[key]:
            lines.append(f"Clips {what} (left out): {', '.join(c[key])}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--base-model")
    ap.add_argument("--new-model")
    ap.add_argument("--out")
    args = ap.parse_args()
    reports = []
    for path in (args.base, args.new):
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"gapstream: error: {path}: {exc}") from None
    text = render(compare(clips_of(reports[0], args.base_model, args.base),
                          clips_of(reports[1], args.new_model, args.new)))
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
