"""Inference stage: frames from the frame ring, batched through the TFLite model, into the maps ring."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .capture import SourceInfo
from .config import InferConfig, ModelConfig
from .errors import ModelError
from .gapmodel import GapModel
from .meta import ModelMeta
from .results import FrameRecord
from .ring import EOS, Ring
from .zoom import Zoom, ZoomSpec, person_scores


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


def plan_input(meta: ModelMeta, info: SourceInfo,
               long_side: int) -> tuple[tuple[int, int] | None, tuple[int, int, int]]:
    """A source's network input size (None: each frame's own, see :class:`Models`) and the
    maps slot that holds any of its frames' conv maps.

    Live streams and webcams are sized by ``max_width`` x ``max_height`` until they connect,
    and image folders mix sizes, so a keep-aspect model sizes their frames one by one; its
    slot holds the square grid at ``long_side``, the largest any aspect gives.
    """
    per_frame = (meta.input_mode == "keep_aspect" and info.kind in ("stream", "webcam", "images")
                 and info.decode_size is None)
    if per_frame:
        return None, meta.maps_shape(meta.input_size_for(1, 1, long_side))
    size = meta.input_size_for(info.height, info.width, long_side)
    return size, meta.maps_shape(size)


class Models:
    """The model at each network input size in use (an interpreter has one input shape).

    ``sizes[k]`` is the input size of ring (camera) ``k``, or None when its frames' size is
    only known as they come (live streams, image folders): those run a keep-aspect model at
    ``meta.input_size_for`` of each frame's own size, so a 4:3 camera is not squashed into
    a guess made before it connected. Known sizes are loaded now, so that a bad graph fails
    before any frame flows; the others on first use.
    """

    def __init__(self, model_path: str, mcfg: ModelConfig, batch_size: int,
                 sizes: list[tuple[int, int] | None], beat: Callable[[], None],
                 zoom: ZoomSpec | None = None) -> None:
        self.path, self.threads, self.batch_size = model_path, mcfg.num_threads or None, batch_size
        self.sizes, self.long_side = sizes, mcfg.input_long_side
        self._models: dict[tuple[int, int], tuple[GapModel, np.ndarray]] = {}
        self.meta = self.get(next((s for s in sizes if s is not None), None))[0].meta
        for size in dict.fromkeys(s for s in sizes if s is not None):
            self.get(size)
            beat()
        self.zoom: Zoom | None = zoom.build(self.threads) if zoom is not None else None

    def get(self, size: tuple[int, int] | None) -> tuple[GapModel, np.ndarray]:
        """The model at ``size`` (None: the model's own) and an input buffer for a full batch."""
        key = size or (0, 0)
        if key not in self._models:
            model = GapModel(self.path, self.threads, size)
            self._models[key] = (model, np.empty((self.batch_size, *model.input_size, 3), np.uint8))
        return self._models[key]

    def size_for(self, ring: int, rec: FrameRecord) -> tuple[int, int]:
        """The input size of frame ``rec`` from ring ``ring``."""
        return self.sizes[ring] or self.meta.input_size_for(rec.h, rec.w, self.long_side)


def run_grouped(models: Models, rings: list[Ring], ring_of: list[int], batch: list[tuple[int, FrameRecord]],
                maps: Ring, stop: Any, counters: Any, beat: Callable[[], None]) -> bool:
    """A batch split by input size, one interpreter call per size, keeping each ring's order;
    frame ``i`` is in ``rings[ring_of[i]]``. False if stopped.

    Frames of one size are grouped across rings, but where a ring's own frames change size (an
    image folder of mixed aspect, a camera that changed resolution) the groups so far run first.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    last: dict[int, tuple[int, int]] = {}
    for i, (_, rec) in enumerate(batch):
        size = models.size_for(ring_of[i], rec)
        if last.get(ring_of[i], size) != size:
            if not _run_groups(models, rings, ring_of, batch, groups, maps, stop, counters, beat):
                return False
            groups, last = {}, {}
        groups.setdefault(size, []).append(i)
        last[ring_of[i]] = size
    return _run_groups(models, rings, ring_of, batch, groups, maps, stop, counters, beat)


def _run_groups(models: Models, rings: list[Ring], ring_of: list[int], batch: list[tuple[int, FrameRecord]],
                groups: dict[tuple[int, int], list[int]], maps: Ring, stop: Any, counters: Any,
                beat: Callable[[], None]) -> bool:
    for size, pos in groups.items():
        model, buf = models.get(size)
        if not run_batch(model, models.path, buf, [rings[ring_of[i]] for i in pos], [batch[i] for i in pos],
                         maps, stop, counters, beat, models.zoom):
            return False
    return True


def run_stage(model_path: str, input_size: tuple[int, int] | None, mcfg: ModelConfig, icfg: InferConfig,
              frames: Ring, maps: Ring, stop: Any, counters: Any, beat: Callable[[], None],
              zoom: ZoomSpec | None = None) -> None:
    """Inference process: resize once, run batches, publish probabilities and conv maps.

    ``input_size`` None: each frame at the keep-aspect input of its own size (see :class:`Models`).
    ``zoom``: each frame's motion-region crops also run through the crop model (gapstream/zoom.py).
    """
    try:
        models = Models(model_path, mcfg, icfg.batch_size, [input_size], beat, zoom)
        beat()
        while not stop.is_set():
            first = _next(frames, stop, beat)
            if first is EOS:
                break
            batch, eos = collect_batch(frames, first, icfg.batch_size, icfg.batch_timeout_ms / 1000)
            if not run_grouped(models, [frames], [0] * len(batch), batch, maps, stop, counters, beat):
                return
            if eos:
                break
    finally:
        maps.close_stream()


def run_batch(model: GapModel, model_path: str, buf: np.ndarray, rings: list[Ring],
              batch: list[tuple[int, FrameRecord]], maps: Ring, stop: Any, counters: Any,
              beat: Callable[[], None] | None = None, zoom: Zoom | None = None) -> bool:
    """One batch (frame ``i`` in ``rings[i]``) through the model into the maps ring; False if stopped.

    Every frame of the batch is resized to ``model.input_size``; each frame's maps go to the
    top-left ``(maps_h, maps_w)`` corner of its maps slot, recorded in its FrameRecord. With
    ``zoom``, each frame's crops are looked at too, in order, and recorded in ``rec.zoom``.
    """
    t0 = time.monotonic()
    frames = [rings[i].view(slot)["frame"][: rec.h, : rec.w] for i, (slot, rec) in enumerate(batch)]
    cameras = [rec.camera for _, rec in batch]
    expected = model.meta.maps_shape(model.input_size)
    crops_ahead = None if zoom is None else zoom.prepare_batch(list(zip(cameras, frames)), expected[:2])
    for i, frame in enumerate(frames):
        model.preprocess(frame, out=buf[i])
    probs, fmaps = model.predict(buf[: len(batch)])
    mh, mw, mc = fmaps.shape[1:]
    slot_h, slot_w, slot_c = maps.view(0)["maps"].shape
    if (mh, mw, mc) != expected:
        raise ModelError(f"{model_path}: conv maps {fmaps.shape[1:]} at input {model.input_size} differ "
                         f"from {expected}")
    if mh > slot_h or mw > slot_w or mc != slot_c:  # a planning error, not the model's
        raise ModelError(f"{model_path}: conv maps {expected} do not fit the maps slots "
                         f"{(slot_h, slot_w, slot_c)}")
    if zoom is not None and crops_ahead is not None:
        # The static look centres crops on the whole frame's strongest person evidence.
        scores = person_scores(fmaps, model.meta) if zoom.static_peaks else None
        for i, (prepared, (_, rec)) in enumerate(zip(crops_ahead.result(), batch)):
            rec.zoom = zoom.look(rec.camera, frames[i], None if scores is None else scores[i], prepared)
            rec.motion = None if prepared is None else prepared.motion
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
