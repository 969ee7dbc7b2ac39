"""Where the zoom's time goes: milliseconds per frame of each of its parts, in one process.

Decodes the first ``--frames`` frames of a clip at full size (the zoom cuts its crops from full-size
frames, so a zoomed run cannot decode straight to the model's input size) and times, per frame:

* ``decode``: the decoder and the conversion to a full-size RGB array (``decode_small``: the same
  straight to the whole-frame model's input size in the same swscale pass, as a run without the
  zoom does: ``capture.to_rgb``);
* ``resize``: the full-size frame to the whole-frame model's input (the inference stage's resize);
* ``regions``: the zoom's background and its moving blobs (``zoom.Regions.find``);
* ``cut``: the crops cut and resized to the crop model's input;
* ``crop_model``: the crop model on them (with the config's threads), and ``cam`` their CAMs;
* ``frame_model``: the whole-frame model on its input, for scale (batches of 4, per frame).

The crop model's figures are per frame (frames with more crops cost more; ``crops`` is their mean).
With ``zoom.every`` in ``--config`` the crop model runs on every n-th frame, as in the run time::

    python benchmarks/zoom_cost.py ../shared/data/clips/people/alley_night_cctv.mp4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.cam import cam_batch  # noqa: E402
from gapstream.config import load_config  # noqa: E402
from gapstream.errors import GapstreamError  # noqa: E402
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.media import RgbConverter  # noqa: E402
from gapstream.meta import load_meta  # noqa: E402
from gapstream.paths import DEFAULT_MODEL, DEFAULT_ZOOM_MODEL  # noqa: E402
from gapstream.zoom import Regions, cut  # noqa: E402


def decoded(clip: str, frames: int, size: tuple[int, int] | None) -> tuple[list[np.ndarray], float]:
    """The first ``frames`` frames as RGB arrays (at ``size`` (w, h), else full size) and the
    milliseconds each cost to decode and convert."""
    out: list[np.ndarray] = []
    if not Path(clip).is_file():
        raise GapstreamError(f"clip {clip} not found")
    rgb = RgbConverter()
    t0 = time.perf_counter()
    with av.open(clip) as c:
        c.streams.video[0].thread_type = "AUTO"
        for frame in c.decode(video=0):
            out.append(rgb(frame) if size is None else rgb(frame, (size[1], size[0]), "AREA"))
            if len(out) >= frames:
                break
    return out, (time.perf_counter() - t0) * 1000 / max(1, len(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--config", help="pipeline config (default: the defaults, with the zoom's own)")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args()
    cfg = load_config(args.config)
    threads = cfg.model.num_threads or None
    frames, ms_decode = decoded(args.clip, args.frames, None)
    h, w = frames[0].shape[:2]
    size = load_meta(DEFAULT_MODEL).input_size_for(h, w, cfg.model.input_long_side)
    model = GapModel(DEFAULT_MODEL, threads, size)
    _, ms_small = decoded(args.clip, args.frames, (size[1], size[0]))
    crop_model = GapModel(cfg.zoom.model or DEFAULT_ZOOM_MODEL, threads, (cfg.zoom.input_size,) * 2)
    regions = Regions(cfg.zoom, cfg.motion)
    person = crop_model.meta.person_index
    spent = dict.fromkeys(("resize", "regions", "cut", "crop_model", "cam", "frame_model"), 0.0)
    crops, since = 0, cfg.zoom.every
    batch = np.empty((4, *size, 3), np.uint8)
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        model.preprocess(frame, out=batch[i % 4])
        t1 = time.perf_counter()
        found = regions.find(frame)
        t2 = time.perf_counter()
        spent["resize"] += t1 - t0
        spent["regions"] += t2 - t1
        if i % 4 == 3:
            model.predict(batch)
            spent["frame_model"] += time.perf_counter() - t2
        if not found:
            since = cfg.zoom.every
            continue
        if since < cfg.zoom.every:
            since += 1
            continue
        since = 1
        t3 = time.perf_counter()
        x = cut(frame, found, cfg.zoom.input_size)
        t4 = time.perf_counter()
        _, maps = crop_model.predict(x)
        t5 = time.perf_counter()
        cam_batch(maps, crop_model.meta.dense_kernel, np.full(len(found), person))
        spent.update(cut=spent["cut"] + t4 - t3, crop_model=spent["crop_model"] + t5 - t4,
                     cam=spent["cam"] + time.perf_counter() - t5)
        crops += len(found)
    n = len(frames)
    report = {"clip": args.clip, "frames": n, "frame_size": [w, h], "model_input": [size[1], size[0]],
              "crop_input": cfg.zoom.input_size, "every": cfg.zoom.every, "crops": crops / n,
              "ms": {"decode": ms_decode, "decode_small": ms_small,
                     **{k: v * 1000 / n for k, v in spent.items()}}}
    for key, ms in report["ms"].items():
        print(f"{key:>12}: {ms:6.2f} ms a frame")
    zoom = sum(report["ms"][k] for k in ("regions", "cut", "crop_model", "cam"))
    full = report["ms"]["decode"] + report["ms"]["resize"] - ms_small
    print(f"crops a frame: {report['crops']:.2f}; the zoom's own parts: {zoom:.2f} ms a frame; full-size "
          f"frames (decode + resize - decode_small): {full:+.2f} ms a frame")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
