"""The measured gapstream methods, run inside a worker process: raw decode, the pipeline,
the single-process stage profile, and random-weight stand-in models.

Heavy imports stay inside the functions: a worker imports only what its method needs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .machine import cpu_seconds


def decode_frames(path: str, limit: int = 0) -> Any:
    """RGB frames of a video with PyAV (threaded decoding, as the capture stage does)."""
    import av

    with av.open(path) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        for n, f in enumerate(c.decode(st)):
            if limit and n >= limit:
                return
            yield f.to_ndarray(format="rgb24")


def w_decode(spec: dict) -> dict:
    import av

    t0, c0 = time.perf_counter(), cpu_seconds()
    n = sum(1 for _ in decode_frames(spec["clip"], spec.get("frames", 0)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    # Decode alone, without the conversion to RGB, for the profile.
    t1 = time.perf_counter()
    with av.open(spec["clip"]) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        m = sum(1 for _ in c.decode(st))
    return {"frames": n, "wall_s": wall, "cpu_s": cpu, "latency_ms": [],
            "extra": {"decode_only_fps": m / (time.perf_counter() - t1)}}


def w_pipeline(spec: dict) -> dict:
    from ..config import load_config
    from ..pipeline import Pipeline

    scratch = Path(spec["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}"
    overrides = {
        "infer.batch_size": spec["batch"], "model.num_threads": spec.get("threads", 0),
        "output.json": str(scratch / f"bench-{tag}.jsonl"), "output.stats_interval": 0,
        "log_level": "WARNING",
    }
    if spec.get("live"):
        overrides.update({"source.live": True, "infer.batch_timeout_ms": 0})
    else:
        overrides["source.live"] = False
    if spec.get("video"):
        overrides["output.video"] = str(scratch / f"bench-{tag}.mp4")
    if spec.get("decode_to_model"):
        overrides["source.decode_to_model"] = True
    if spec.get("long_side"):
        overrides["model.input_long_side"] = spec["long_side"]
    if "zoom" in spec:
        overrides["zoom.enabled"] = spec["zoom"]
    cfg = load_config(None, overrides)
    pipe = Pipeline(spec["clip"], spec["model"], cfg)
    lat: list[float] = []
    # Steady state, as for the reference row (which excludes loading its model): the clock
    # starts when the first frame was captured, after the processes and the interpreter started.
    t_start = time.perf_counter()
    t0 = c0 = 0.0
    for r in pipe.run():
        if not lat:
            t0, c0 = time.perf_counter() - r.latency_ms / 1000, cpu_seconds()
        lat.append(r.latency_ms)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    startup = t0 - t_start
    st = pipe.stats
    for suffix in (".jsonl", ".mp4"):
        (scratch / f"bench-{tag}{suffix}").unlink(missing_ok=True)
    return {"frames": len(lat), "wall_s": wall, "cpu_s": cpu, "latency_ms": lat,
            "extra": {"startup_s": startup, "stage_ms": st.stage_ms if st else {},
                      "dropped": st.dropped if st else 0,
                      "captured": st.captured if st else len(lat), "batches": st.batches if st else 0}}


def w_profile(spec: dict) -> dict:
    """Per-frame time of each stage, in one process, with the real model."""
    import av
    import numpy as np

    from ..config import PostConfig
    from ..gapmodel import GapModel
    from ..media import add_video_stream, encode
    from ..post import analyse, annotate_frame

    model = GapModel(spec["model"], spec.get("threads") or None)
    meta = model.meta
    cfg = PostConfig(threshold=meta.cam_threshold, score_threshold=meta.decision_threshold)
    batch = int(spec.get("batch", 8))
    limit = int(spec.get("frames", 0))
    times: dict[str, list[float]] = {k: [] for k in ("decode", "to_rgb", "resize", "infer_b1", "cam_boxes",
                                                     "blend_draw", "encode", "jsonl")}
    inputs = []
    clock = time.perf_counter
    sink = av.open(str(Path(spec["scratch"]) / f"profile-{os.getpid()}.mp4"), "w")
    enc = None
    model.predict(np.zeros((1, *meta.input_size, 3), np.uint8))
    model.predict(np.zeros((batch, *meta.input_size, 3), np.uint8))
    with av.open(spec["clip"]) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        frames = c.decode(st)
        n = 0
        while not limit or n < limit:
            t0 = clock()
            try:
                vf = next(frames)
            except StopIteration:
                break
            t1 = clock()
            frame = vf.to_ndarray(format="rgb24")
            t2 = clock()
            x = model.preprocess(frame)
            t3 = clock()
            probs, maps = model.predict(x[None])
            t4 = clock()
            h, w = frame.shape[:2]
            prob = float(probs[0][meta.person_index])
            _, cam, is_person, det = analyse(probs[0], maps[0], meta, cfg, w, h)
            t5 = clock()
            annotate_frame(frame, cam, is_person, det, prob, cfg)
            t6 = clock()
            if enc is None:
                enc = add_video_stream(sink, w, h, 30, crf=23, preset="veryfast")
                enc.thread_type = "AUTO"
            encode(sink, enc, frame[: enc.height, : enc.width])
            t7 = clock()
            json.dumps({"frame": n, "person_prob": round(prob, 4), "boxes": det.to_list()})
            t8 = clock()
            for k, a, b in (("decode", t0, t1), ("to_rgb", t1, t2), ("resize", t2, t3),
                            ("infer_b1", t3, t4), ("cam_boxes", t4, t5), ("blend_draw", t5, t6),
                            ("encode", t6, t7), ("jsonl", t7, t8)):
                times[k].append((b - a) * 1000)
            inputs.append(x)
            n += 1
    if enc is not None:
        encode(sink, enc)
    sink.close()
    (Path(spec["scratch"]) / f"profile-{os.getpid()}.mp4").unlink(missing_ok=True)
    xs = np.stack(inputs)
    per: list[float] = []
    for i in range(0, len(xs) - batch + 1, batch):
        t = clock()
        model.predict(xs[i : i + batch])
        per.append((clock() - t) * 1000 / batch)
    times[f"infer_b{batch}"] = per
    return {"frames": n, "stage_ms": {k: float(np.median(v)) for k, v in times.items() if v},
            "stage_mean_ms": {k: float(np.mean(v)) for k, v in times.items() if v}}


def w_standin(spec: dict) -> dict:
    import numpy as np

    from ..training.build import build_model
    from ..training.export import export

    out = Path(spec["out"])
    size = 224 if spec.get("backbone", "mobilenet") == "mobilenet" else 64
    model = build_model(alpha=float(spec.get("alpha", 0.5)), backbone=spec.get("backbone", "mobilenet"),
                        weights=None, input_size=size)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "standin.keras"))
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    export(model, out, calib)
    return {"out": str(out)}
