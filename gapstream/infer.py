"""Inference stage: frames from the frame ring, batched through the TFLite model, into the maps ring."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .config import InferConfig, ModelConfig
from .errors import ModelError
from .gapmodel import GapModel
from .results import FrameRecord
from .ring import EOS, Ring


def _next(ring: Ring, stop: Any, beat: Callable[[], None]) -> tuple[int, FrameRecord] | None:
    while not stop.is_set():
        beat()
        try:
            return ring.get(timeout=0.1)
        except queue.Empty:
            continue
    return EOS


def collect_batch(ring: Ring, first: tuple[int, FrameRecord], size: int, timeout: float
                  ) -> tuple[list[tuple[int, FrameRecord]], bool]:
    """Add to ``first`` what arrives within ``timeout`` s, up to ``size``; returns (batch, eos)."""
    batch = [first]
    deadline = time.monotonic() + timeout
    while len(batch) < size:
        remaining = deadline - time.monotonic()
        try:
            item = ring.get(timeout=remaining) if remaining > 0 else ring.ready.get_nowait()
        except queue.Empty:
            break
        if item is EOS:
            return batch, True
        batch.append(item)
    return batch, False


def run_stage(model_path: str, input_size: tuple[int, int], mcfg: ModelConfig, icfg: InferConfig,
              frames: Ring, maps: Ring, stop: Any, counters: Any, beat: Callable[[], None]) -> None:
    """Inference process: resize once, run batches, publish probabilities and conv maps."""
    try:
        model = GapModel(model_path, mcfg.num_threads or None, input_size)
        beat()
        h, w = model.input_size
        buf = np.empty((icfg.batch_size, h, w, 3), np.uint8)
        while not stop.is_set():
            first = _next(frames, stop, beat)
            if first is EOS:
                break
            batch, eos = collect_batch(frames, first, icfg.batch_size, icfg.batch_timeout_ms / 1000)
            if not run_batch(model, model_path, buf, [frames] * len(batch), batch, maps, stop, counters,
                             beat):
                return
            if eos:
                break
    finally:
        maps.close_stream()


def run_batch(model: GapModel, model_path: str, buf: np.ndarray, rings: list[Ring],
              batch: list[tuple[int, FrameRecord]], maps: Ring, stop: Any, counters: Any,
              beat: Callable[[], None] | None = None) -> bool:
    """One batch (frame ``i`` in ``rings[i]``) through the model into the maps ring; False if stopped.

    Every frame of the batch is resized to ``model.input_size``; each frame's maps go to the
    top-left ``(maps_h, maps_w)`` corner of its maps slot, recorded in its FrameRecord.
    """
    t0 = time.monotonic()
    for i, (slot, rec) in enumerate(batch):
        model.preprocess(rings[i].view(slot)["frame"][: rec.h, : rec.w], out=buf[i])
    probs, fmaps = model.predict(buf[: len(batch)])
    mh, mw, mc = fmaps.shape[1:]
    expected = model.meta.maps_shape(model.input_size)
    slot_h, slot_w, slot_c = maps.view(0)["maps"].shape
    if (mh, mw, mc) != expected:
        raise ModelError(f"{model_path}: conv maps {fmaps.shape[1:]} at input {model.input_size} differ "
                         f"from {expected}")
    if mh > slot_h or mw > slot_w or mc != slot_c:  # a planning error, not the model's
        raise ModelError(f"{model_path}: conv maps {expected} do not fit the maps slots "
                         f"{(slot_h, slot_w, slot_c)}")
    t1 = time.monotonic()
    for i, (slot, rec) in enumerate(batch):
        mslot = maps.acquire(stop, on_wait=beat)
        if mslot is None:
            return False
        v = maps.view(mslot)
        v["probs"][:] = probs[i]
        v["maps"][:mh, :mw] = fmaps[i]
        rec.frame_slot, rec.t_inf0, rec.t_inf, rec.batch = slot, t0, t1, len(batch)
        rec.maps_h, rec.maps_w = mh, mw
        maps.publish(mslot, rec, rec.index)
    counters.add("inferred", len(batch))
    counters.add("batches")
    return True
