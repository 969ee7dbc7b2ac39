"""Post-processing stage: CAM of the predicted class, boxes by the paper's rule, blending."""

from __future__ import annotations

import queue
import time
from typing import Any

import numpy as np

from .annotate import blend, draw
from .cam import boxes_from_cam, cam_batch, scale_boxes, upsample
from .config import PostConfig
from .detections import Detections
from .meta import ModelMeta
from .ring import EOS, Ring


def localize_frame(cam: np.ndarray, prob: float, width: int, height: int, cfg: PostConfig
                   ) -> Detections:
    """Boxes in frame pixels from a low-resolution CAM.

    Boxes are found on the CAM upsampled to at most ``box_resolution`` on its longer side
    and scaled to the frame: the same components at a fraction of the cost of full size.
    ``cfg.threshold`` must be resolved (the pipeline fills in the model's own).
    """
    assert cfg.threshold is not None
    s = min(1.0, cfg.box_resolution / max(width, height))
    bw, bh = max(1, round(width * s)), max(1, round(height * s))
    det = boxes_from_cam(upsample(cam, bw, bh, cfg.cubic), cfg.threshold, cfg.min_area, prob)
    return scale_boxes(det, width / bw, height / bh)


def run_stage(meta: ModelMeta, cfg: PostConfig, annotate: bool, maps: Ring, frames: Ring,
              results: Any, stop: Any, counters: Any) -> None:
    """Post-processing process: CAM, boxes and (optionally) annotation of the frame in place."""
    kernel = meta.dense_kernel
    person = meta.person_index
    try:
        while not stop.is_set():
            try:
                item = maps.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is EOS:
                break
            mslot, m = item
            v = maps.view(mslot)
            probs = v["probs"].copy()
            cls = int(np.argmax(probs))
            cam = cam_batch(v["maps"][None], kernel, np.array([cls]))[0]
            maps.release(mslot)
            prob = float(probs[person])
            h, w = m["h"], m["w"]
            is_person = cls == person and prob >= cfg.score_threshold
            det = localize_frame(cam, prob, w, h, cfg) if is_person else Detections.empty()
            if annotate:
                frame = frames.view(m["frame_slot"])["frame"][:h, :w]
                if is_person:
                    blend(frame, upsample(cam, w, h, cfg.cubic), cfg.blend_alpha)
                draw(frame, det, prob)
            m.update(probs=probs, cls=cls, person=is_person, xyxy=det.xyxy, scores=det.scores,
                     cam=cam, t_post=time.monotonic())
            results.put((m["frame_slot"], m))
            counters.add("posted")
    finally:
        results.put(EOS)
