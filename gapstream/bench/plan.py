"""What to measure: the models to use (random-weight stand-ins where missing) and the rows.

* ``decode``      raw PyAV decode of the clip to RGB arrays: the ceiling no pipeline can beat;
* ``gapstream``   the multi-process pipeline (int8 / float model, batch 1/4/8), JSONL sink, and
  one row with the annotated video sink (blend + draw + H.264 encode);
* ``reference``   the naive single-process approach of the original project: Keras
  ``model.predict`` per frame, a Python loop over the channels for the CAM, cubic resize of
  the CAM to the frame, threshold + connected components, blend (needs TensorFlow);
* ``hog``         OpenCV's HOG people detector (``detectMultiScale``) on every frame (OpenCV 4:
  gapstream pins opencv-python-headless<5, which still has HOGDescriptor);
* ``live``        the pipeline on a paced synthetic 30 fps camera: capture-to-sink latency
  without the queueing of an offline file;
* ``single-core`` the pipeline pinned to one core (``taskset -c 0``) with one inference thread;
* ``direct``      the pipeline decoding straight to the model's input size (``source.decode_to_model``),
  at the model's long side and at 448: its fps against the decode ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from ..meta import load_meta
from ..paths import MODELS_DIR, ROOT, shipped_model
from .runner import REFERENCE, run_worker


def _find_keras() -> Path | None:
    """The reference row's model: the original project's architecture (224x224, GAP, Dense)."""
    cands = sorted(MODELS_DIR.glob("reference*.keras"))
    if cands:
        return cands[0]
    runs = sorted((ROOT / "runs").glob("**/best.keras"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def resolve_models(args: argparse.Namespace, work: Path) -> dict:
    """The int8, float32 and Keras models to use; stand-ins (random weights) where missing."""
    models: dict[str, Any] = {"standin": []}
    int8 = Path(args.int8) if args.int8 else shipped_model("int8")
    flt = Path(args.float_model) if args.float_model else shipped_model("float32")
    keras_arg = args.keras
    keras = None
    if keras_arg and keras_arg.lower() == "none":
        keras = "none"
    elif keras_arg and keras_arg != "standin":
        keras = Path(keras_arg)
    elif keras_arg is None:
        keras = _find_keras()
    alpha = 0.5
    for p in (int8, flt):
        if p.is_file():
            with contextlib.suppress(Exception):  # only a hint for the stand-in's width
                alpha = load_meta(p).alpha
            break
    need_standin = not int8.is_file() or not flt.is_file() or keras is None
    if need_standin:
        sdir = work / f"standin-{args.standin_backbone}-{alpha:g}"
        if not (sdir / "gapstream_person_int8.tflite").is_file():
            print(f"bench: building random-weight stand-in models in {sdir} ...", file=sys.stderr)
            res = run_worker({"method": "standin", "out": str(sdir), "alpha": alpha,
                              "backbone": args.standin_backbone}, sample_memory=False)
            if res.get("error"):
                raise RuntimeError(f"cannot build stand-in models: {res['error']}")
        if not int8.is_file():
            int8 = sdir / "gapstream_person_int8.tflite"
            models["standin"].append("int8")
        if not flt.is_file():
            flt = sdir / "gapstream_person_float32.tflite"
            models["standin"].append("float32")
        if keras is None:
            keras = sdir / "standin.keras"
            models["standin"].append("keras")
    models.update({"int8": str(int8), "float32": str(flt), "keras": str(keras) if keras else "none"})
    return models


def plan_rows(args: argparse.Namespace, clips: list[dict], models: dict, hog_py: str | None,
              work: Path) -> list[dict]:
    """The measurements to make, in order: (label, spec, runner options)."""
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    slow = args.slow_frames
    scratch = str(work / "tmp")
    rows: list[dict] = []
    for clip in clips:
        res = f"{clip['width']}x{clip['height']}"
        base = {"clip": clip["path"], "scratch": scratch}

        def add(method: str, label: str, spec: dict, res: str = res, base: dict = base, **opts: Any) -> None:
            rows.append({"method": method, "label": label, "clip": res,
                         "spec": {**base, "method": spec.pop("kind", method), **spec}, **opts})

        add("decode", "PyAV decode to RGB (ceiling)", {"kind": "decode"})
        for q in ("int8", "float32"):
            if q == "float32" and "float" in skip:
                continue
            for b in batches:
                add("gapstream", f"gapstream {q} batch {b}", {"kind": "pipeline", "model": models[q],
                                                               "batch": b}, model=q, batch=b, threads="all")
        b = 4 if 4 in batches else batches[-1]
        # The zoom (on by default with the shipped models) crops full-size frames: these rows go without
        add("gapstream", f"gapstream int8 batch {b}, no zoom", {
            "kind": "pipeline", "model": models["int8"], "batch": b, "zoom": False},
            model="int8", batch=b, threads="all")
        if "direct" not in skip:  # issue 9: decode straight to the model's input size
            add("gapstream", f"gapstream int8 batch {b}, no zoom, decoded to model size", {
                "kind": "pipeline", "model": models["int8"], "batch": b, "decode_to_model": True,
                "zoom": False}, model="int8", batch=b, threads="all", direct=True)
            if load_meta(models["int8"]).input_mode == "keep_aspect":
                add("gapstream", f"gapstream int8 batch {b}, no zoom, long side 448, decoded to model size", {
                    "kind": "pipeline", "model": models["int8"], "batch": b, "decode_to_model": True,
                    "long_side": 448, "zoom": False}, model="int8", batch=b, threads="all", direct=True)
        if "video" not in skip:
            add("gapstream", f"gapstream int8 batch {b} + annotated video", {
                "kind": "pipeline", "model": models["int8"], "batch": b, "video": True},
                model="int8", batch=b, threads="all")
        if "single" not in skip:
            for b in (1, 4):
                add("single-core", f"gapstream int8 batch {b}, 1 core (taskset -c 0, 1 thread)", {
                    "kind": "pipeline", "model": models["int8"], "batch": b, "threads": 1},
                    model="int8", batch=b, threads=1, pin_core=0)
        if "reference" not in skip:
            if models["keras"] == "none":
                rows.append({"method": REFERENCE, "label": "reference (naive Keras, one process)",
                             "clip": res, "skipped": "no Keras model (--keras none)"})
            else:
                add(REFERENCE, "reference (naive Keras, one process)", {
                    "kind": "reference", "keras": models["keras"], "frames": slow}, model="keras", batch=1)
        if "hog" not in skip:
            if hog_py is None:
                rows.append({"method": "hog", "label": "OpenCV HOG people detector", "clip": res,
                             "skipped": "no OpenCV with HOGDescriptor"})
            else:
                add("hog", "OpenCV HOG people detector", {"kind": "hog", "frames": slow}, python=hog_py)
    if "live" not in skip:
        w, h = (clips[0]["width"], clips[0]["height"]) if clips else (640, 480)
        n = 60 if args.quick else 240
        uri = f"synthetic://?width={w}&height={h}&fps=30&frames={n}&live=1"
        rows.append({"method": "live", "label": "gapstream int8 batch 1, live 30 fps camera (paced)",
                     "clip": f"{w}x{h} live", "model": "int8", "batch": 1, "threads": "all",
                     "spec": {"method": "pipeline", "clip": uri, "scratch": scratch, "model": models["int8"],
                              "batch": 1, "live": True}})
    return rows
