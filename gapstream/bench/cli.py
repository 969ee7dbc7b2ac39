"""``gapstream bench``: its options and the run from clips to report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..credentials import redact_text
from ..paths import BENCH_WORK_DIR, RESULTS_DIR, SAMPLE


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=300, metavar="N",
                   help="frames per generated clip (default 300)")
    p.add_argument("--slow-frames", type=int, default=90, metavar="N",
                   help="frames measured for the slow methods, reference and HOG (default 90)")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run: 40-frame clips, 10 frames for the slow methods, fewer rows")
    p.add_argument("--clip", action="append", metavar="VIDEO",
                   help="benchmark this clip instead of the generated 1280x720 and 640x480 ones "
                        "(repeatable)")
    p.add_argument("--source", metavar="VIDEO",
                   help=f"make the clips by rescaling/looping this video (default {SAMPLE.name} "
                        "if present, else a pan across INRIA test images, else synthetic frames)")
    p.add_argument("--int8", metavar="TFLITE",
                   help="int8 model (default models/gapstream_person_int8.tflite, else a random-weight "
                        "stand-in)")
    p.add_argument("--float", dest="float_model", metavar="TFLITE",
                   help="float32 model (default models/gapstream_person_float32.tflite, else a stand-in)")
    p.add_argument("--keras", metavar="PATH",
                   help="Keras model for the reference row (default models/*.keras or the newest "
                        "runs/**/best.keras, else a random-weight MobileNet); 'none' skips the row")
    p.add_argument("--standin-backbone", default="mobilenet", choices=["mobilenet", "tiny"],
                   help=argparse.SUPPRESS)
    p.add_argument("--batch", default="1,4,8", metavar="N[,N...]",
                   help="pipeline batch sizes, comma-separated (default 1,4,8)")
    p.add_argument("--hog-python", metavar="PYTHON",
                   help="interpreter whose OpenCV has HOGDescriptor for the HOG rows (default: this one)")
    p.add_argument("--skip", default="", metavar="ROWS",
                   help="comma-separated row kinds to skip: reference,hog,float,direct,video,single,live,"
                        "profile")
    p.add_argument("--out", default=str(RESULTS_DIR), metavar="DIR",
                   help="where results.md/json, fps.png, latency.png and README_table.md go")
    p.add_argument("--work", default=str(BENCH_WORK_DIR), metavar="DIR", help="clips and scratch files")
    p.add_argument("--no-plot", action="store_true", help="do not draw fps.png / latency.png")
    p.add_argument("--command", default=None, help=argparse.SUPPRESS)  # the command shown in the report


def main(args: argparse.Namespace) -> int:
    """Measure every planned row, then write the report, the README table and the plots."""
    # Imported here: building the CLI parser (gapstream --help) must not load PyAV or OpenCV.
    from .baselines import hog_python
    from .clips import CLIP_SIZES, make_clip, probe_clip
    from .machine import cpu_seconds, machine_info, system_busy_s
    from .plan import plan_rows, resolve_models
    from .report import plot, render_markdown, render_readme_snippet, targets
    from .runner import REFERENCE, measure, run_worker

    t_start = time.monotonic()
    work = Path(args.work)
    out = Path(args.out)
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.frames = min(args.frames, 40)
        args.slow_frames = min(args.slow_frames, 10)
        if args.batch == "1,4,8":
            args.batch = "1,4"
    command = args.command or "gapstream bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"]
                                                              else sys.argv[1:])
    machine = machine_info()
    busy0, own0 = system_busy_s(), cpu_seconds()
    notes: list[str] = []
    if machine["loadavg_1min_at_start"] > 0.7:
        notes.append(f"The machine was not idle at the start (1-minute load average "
                     f"{machine['loadavg_1min_at_start']}): other work competed for the cores.")
        print(f"bench: warning: load average {machine['loadavg_1min_at_start']}: the numbers will be "
              "pessimistic", file=sys.stderr)
    # Clips.
    if args.clip:
        clips = [probe_clip(Path(c)) for c in args.clip]
    else:
        src = Path(args.source) if args.source else (SAMPLE if SAMPLE.is_file() else None)
        clips = []
        for w, h in CLIP_SIZES:
            path = work / f"clip_{w}x{h}_{args.frames}.mp4"
            print(f"bench: clip {path} ...", file=sys.stderr)
            clips.append(make_clip(path, w, h, args.frames, src))
    models = resolve_models(args, work)
    hog_py, hog_why = hog_python(args.hog_python)
    if hog_py is None:
        notes.append(f"HOG rows skipped: {hog_why}.")
    elif hog_py != sys.executable:
        notes.append(f"HOG rows run under {hog_py} (OpenCV {hog_why}): OpenCV 5 has no HOGDescriptor.")
    print(f"bench: {machine['cpu']}, {machine['cores']} cores; models: int8 {models['int8']}, "
          f"float32 {models['float32']}, keras {models['keras']}"
          + (f" (stand-in: {', '.join(models['standin'])})" if models["standin"] else ""))
    rows = plan_rows(args, clips, models, hog_py, work)
    measure(rows)
    profile: dict[str, dict] = {}
    if "profile" not in {s.strip() for s in args.skip.split(",")}:
        for c in clips:
            res = run_worker({"method": "profile", "clip": c["path"], "model": models["int8"], "batch": 8,
                              "frames": 60 if args.quick else 150, "scratch": str(work / "tmp")},
                             sample_memory=False)
            if res.get("error"):
                notes.append(f"stage profile failed on {c['width']}x{c['height']}: {res['error']}")
                continue
            profile[f"{c['width']}x{c['height']}"] = res["stage_ms"]
    ref = next((r for r in rows if r["method"] == REFERENCE and "fps" in r), None)
    if ref is not None:
        info = ref["extra"].get("model", {})
        notes.append(f"reference Keras model: {ref['extra'].get('keras')} ({info.get('backbone', '?')} alpha "
                     f"{info.get('alpha', '?')}, {info.get('input_size', '?')} px, "
                     f"{ref['extra'].get('channels')} CAM channels).")
    dec = {r["clip"]: r for r in rows if r["method"] == "decode" and "fps" in r}
    for clip, r in dec.items():
        d = r["extra"].get("decode_only_fps")
        if d:
            notes.append(f"{clip}: PyAV decode alone (no RGB conversion) {d:.0f} fps; to RGB arrays "
                         f"{r['fps']:.0f} fps.")
    notes.append("reference = Keras model.predict per frame, per-channel CAM loop in Python, cubic resize "
                 "of the CAM to the frame, threshold + connected components, JET blend, all in one process "
                 "(no video encode); reference and HOG are measured on the first "
                 f"{args.slow_frames} frames of each clip.")
    notes.append("HOG: cv2.HOGDescriptor_getDefaultPeopleDetector, detectMultiScale(winStride=(8, 8), "
                 "padding=(8, 8), scale=1.05) on the full frame.")
    report = {"machine": machine, "command": command, "models": models, "clips": clips,
              "rows": rows, "profile": profile, "notes": notes}
    report["targets"] = targets(rows)
    busy1, own1, wall = system_busy_s(), cpu_seconds(), time.monotonic() - t_start
    if busy0 is not None and busy1 is not None:
        other = max(0.0, (busy1 - busy0) - (own1 - own0))
        machine["other_cpu_pct_during_run"] = round(100 * other / wall, 1)
        if machine["other_cpu_pct_during_run"] > 20:
            notes.append(f"Other processes used {machine['other_cpu_pct_during_run']:.0f}% of a core on "
                         "average during the run (busy CPU time of the machine minus this benchmark's own): "
                         "the numbers are pessimistic and noisy; re-run on an idle machine.")
    report["seconds"] = time.monotonic() - t_start
    md = redact_text(render_markdown(report))  # reports get shared: no source passwords
    (out / "results.md").write_text(md)
    (out / "README_table.md").write_text(redact_text(render_readme_snippet(report)))
    for r in rows:
        r.pop("spec", None)
        r.pop("python", None)
    (out / "results.json").write_text(redact_text(json.dumps(report, indent=1, default=str)) + "\n")
    if not args.no_plot:
        try:
            plot(report, out)
        except ImportError:
            print("bench: matplotlib not installed: no plots", file=sys.stderr)
    print(md)
    print(f"bench: wrote {out}/results.md, results.json, README_table.md"
          + ("" if args.no_plot else ", fps.png, latency.png") + f" in {report['seconds']:.0f} s")
    return 0
