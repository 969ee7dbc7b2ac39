"""Milliseconds per frame of the network and of the post stage, in one process.

Decodes the first 200 frames of a clip straight to the model's input size, runs the int8 and
float32 models on them in batches of 4 with one and two threads, then times the post stage's work
per frame (motion gate, pooling, smoothing, CAM and boxes: ``post.analyse`` with the default
config). No pipeline processes, so the figures are the stages' own costs::

    python benchmarks/inference_ms.py ../shared/data/clips/people/alley_night_cctv.mp4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream import post  # noqa: E402
from gapstream.config import load_config  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.motion import MotionGate  # noqa: E402
from gapstream.pipeline import resolve_post  # noqa: E402
from gapstream.smoothing import ScoreHistory  # noqa: E402

MODELS = ("models/gapstream_person_int8.tflite", "models/gapstream_person_float32.tflite")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    cfg = load_config(None)
    model = GapModel(MODELS[0])
    with av.open(args.clip) as c:
        stream = c.streams.video[0]
        h, w = model.meta.input_size_for(stream.codec_context.height, stream.codec_context.width)
        frames = [f.to_ndarray(format="rgb24", width=w, height=h)
                  for _, f in zip(range(args.frames), c.decode(stream))]
    batches = [np.stack(frames[i:i + 4]) for i in range(0, len(frames) - 3, 4)]
    for path in MODELS:
        for threads in (1, 2):
            m = GapModel(path, num_threads=threads, input_size=(h, w))
            m.predict(batches[0])
            t = time.perf_counter()
            outs = [m.predict(b) for b in batches]
            ms = (time.perf_counter() - t) / (4 * len(batches)) * 1000
            print(f"{Path(path).name}, {threads} thread(s), {h}x{w} input: {ms:.1f} ms per frame")
    gate, history = MotionGate(cfg.motion), ScoreHistory(cfg.post.smooth_window_s, cfg.post.smooth)
    pcfg = resolve_post(cfg.post, model.meta)
    rate = 25.0
    pairs = [(p, mp) for ps, mps in outs for p, mp in zip(ps, mps)]
    t = time.perf_counter()
    for k, (probs, maps) in enumerate(pairs):
        pts = k / rate
        moved = gate.keep(frames[k], pts, maps.shape[0], maps.shape[1])
        post.analyse(probs.copy(), maps, model.meta, pcfg, 1280, 720, None,
                     lambda q, pts=pts: history.update(pts, q), moved)
    print(f"post stage: {(time.perf_counter() - t) / len(pairs) * 1000:.1f} ms per frame")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
