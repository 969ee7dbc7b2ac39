"""Post-processing stage: CAM of the predicted class, boxes by :func:`cam.localize`, blending."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from .annotate import blend, draw
from .cam import cam_batch, decides_person, localize, upsample
from .config import MotionConfig, PostConfig
from .detections import Detections
from .meta import ModelMeta
from .motion import MotionGate, peak_moved
from .results import FrameRecord
from .ring import EOS, Ring
from .smoothing import ScoreHistory, with_person_prob
from .zones import Polygon, keep_weights, masked_probs
from .zoom import ZoomLook, crop_detections, frame_cam


def analyse(probs: np.ndarray, maps: np.ndarray, meta: ModelMeta, cfg: PostConfig, width: int,
            height: int, keep: np.ndarray | None = None, smooth: Callable[[float], float] | None = None,
            person_keep: np.ndarray | None = None) -> tuple[int, np.ndarray, bool, Detections]:
    """One frame's (predicted class, its low-resolution CAM, person?, boxes in frame pixels).

    ``keep`` (per-cell weights: an exclusion mask's, see :func:`zones.keep_weights`, and/or the
    motion gate's) applies to the maps first, so that ``probs`` is overwritten with the masked
    probabilities; ``person_keep`` (the motion gate's ``person`` mode) likewise, for the person
    class's pooling only. When no cell is left to the person, nothing can be a person.
    ``smooth`` (a camera's :meth:`smoothing.ScoreHistory.update` at this frame's time) then turns
    the frame's person probability into the one that decides, also written to ``probs``.
    """
    if keep is not None or person_keep is not None:
        both = keep if keep is not None else np.ones(maps.shape[:2], np.float32)
        person = both if person_keep is None else both * person_keep
        if (person >= 0.5).any():
            per_class = both
            if person_keep is not None:
                per_class = np.repeat(both[:, :, None], len(probs), axis=2)
                per_class[:, :, meta.person_index] = person
            probs[:] = masked_probs(maps, meta, per_class)
        else:  # the bias alone would decide (the shipped model's leans to person: 0.501)
            probs[:] = no_person(probs, meta.person_index)
        maps = maps * person[:, :, None]
    if smooth is not None:
        probs[:] = with_person_prob(probs, meta.person_index, smooth(float(probs[meta.person_index])))
    cls = int(np.argmax(probs))
    cam = cam_batch(maps[None], meta.dense_kernel, np.array([cls]))[0]
    is_person, det = localize(cam, probs, meta.person_index, width, height, cfg)
    return cls, cam, is_person, det


def zoomed(probs: np.ndarray, maps: np.ndarray, meta: ModelMeta, cfg: PostConfig, zoom_prob: float,
           look: ZoomLook, width: int, height: int) -> tuple[int, np.ndarray, bool, Detections] | None:
    """:func:`analyse`'s result when the crops' (smoothed) ``zoom_prob`` beats the whole frame's
    decided probability in ``probs`` (then overwritten), with the person crops' boxes and, for a
    person frame, their CAMs on the frame's grid (:func:`zoom.frame_cam`; the frame is ``width`` x
    ``height``); None when it does not, and the whole frame's result stands."""
    if zoom_prob <= float(probs[meta.person_index]):
        return None
    probs[:] = with_person_prob(probs, meta.person_index, zoom_prob)
    cls = int(np.argmax(probs))
    is_person = decides_person(probs, meta.person_index, cfg)
    cam = cam_batch(maps[None], meta.dense_kernel, np.array([cls]))[0]
    if not is_person:
        return cls, cam, False, Detections.empty()
    crop_cfg = cfg if cfg.zoom_box_scale is None else replace(cfg, box_scale=cfg.zoom_box_scale)
    persons, det = crop_detections(look, crop_cfg)
    crops = frame_cam(look, persons, cam.shape, width, height)
    return cls, cam if crops is None else crops, True, det


def no_person(probs: np.ndarray, person_index: int) -> np.ndarray:
    """Probabilities that say "no person" for sure: the person class 0, the others shared."""
    out = np.full_like(probs, 1.0 / max(1, len(probs) - 1))
    out[person_index] = 0.0
    return out


def annotate_frame(frame: np.ndarray, cam: np.ndarray, is_person: bool, det: Detections, prob: float,
                   cfg: PostConfig) -> None:
    """Draw the heat-map (person frames only), the boxes and the probability on ``frame`` in place."""
    h, w = frame.shape[:2]
    if is_person:
        blend(frame, upsample(cam, w, h, cfg.cubic), cfg.blend_alpha)
    draw(frame, det, prob)


def to_frame_coordinates(det: Detections, rec: FrameRecord) -> Detections:
    """Boxes found on the stored frame, in the frame's own coordinates (it may have been scaled
    down to fit its ring slot, or decoded straight to the model's input size)."""
    return det.scaled((rec.src_w or rec.w) / rec.w, (rec.src_h or rec.h) / rec.h)


def camera_history(histories: dict[int, ScoreHistory], camera: int, window_s: float,
                   how: str) -> ScoreHistory:
    """Camera ``camera``'s score history in ``histories``, made on its first frame."""
    if camera not in histories:
        histories[camera] = ScoreHistory(window_s, how)
    return histories[camera]


def run_stage(meta: ModelMeta, cfg: PostConfig, annotate: bool, maps: Ring, frames: Ring | list[Ring],
              results: Any, stop: Any, counters: Any, beat: Callable[[], None],
              masks: Sequence[Sequence[Polygon]] = (), motion: MotionConfig | None = None,
              stills: Sequence[bool] = ()) -> None:
    """Post-processing process: CAM, boxes and (optionally) annotation of the frame in place.

    ``masks[k]``: camera ``k``'s exclusion polygons, rasterised on each frame's own maps grid
    (cached per grid). With several cameras, ``frames`` is a list indexed by ``FrameRecord.camera``.
    ``motion``: when enabled, each camera's :class:`motion.MotionGate` closes the cells that have
    not moved lately (frames reach this stage in order, per camera), on the zoom's motion where the
    record carries it (``rec.motion``); with ``cfg.smooth_window_s``,
    each camera's :class:`smoothing.ScoreHistory` smooths the decision. ``stills[k]``: camera
    ``k`` is an image folder, whose frames are unrelated pictures: neither applies to it.
    Frames with motion-region crops (``rec.zoom``) take the crops' decision where their highest
    probability, smoothed alike, is the larger (:func:`zoomed`).
    """
    rings = frames if isinstance(frames, list) else [frames]
    zoom_cfg = replace(cfg, score_threshold=cfg.zoom_score_threshold)  # resolved (pipeline.resolve_post)
    gates: dict[int, MotionGate] = {}
    histories: dict[int, ScoreHistory] = {}
    zoom_histories: dict[int, ScoreHistory] = {}
    sustain_histories: dict[int, ScoreHistory] = {}  # each camera's zoomed probabilities, for their minimum
    try:
        while not stop.is_set():
            beat()
            try:
                item = maps.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is EOS:
                break
            mslot, rec = item
            v = maps.view(mslot)
            probs = v["probs"].copy()
            fmaps = v["maps"][: rec.maps_h, : rec.maps_w]  # this frame's own grid (see FrameRecord)
            keep = keep_weights(masks[rec.camera], rec.maps_h, rec.maps_w) if masks else None
            moved, smooth, person_keep = None, None, None
            still = bool(stills) and stills[rec.camera]
            fcfg = cfg if rec.zoom is None else zoom_cfg  # never zoomed: image folders, zoom off
            if cfg.smooth_window_s > 0 and not still:
                history = camera_history(histories, rec.camera, cfg.smooth_window_s, cfg.smooth)
                smooth = partial(history.update, rec.pts)
            if motion is not None and motion.enabled and not still:
                gate = gates.get(rec.camera) or gates.setdefault(rec.camera, MotionGate(motion))
                moved = gate.keep(rings[rec.camera].view(rec.frame_slot)["frame"][: rec.h, : rec.w], rec.pts,
                                  rec.maps_h, rec.maps_w, rec.motion)
                if moved is not None and motion.gate == "pooling":
                    keep, moved = (moved if keep is None else keep * moved), None
                elif moved is not None and motion.gate == "person":
                    person_keep, moved = moved, None
            cls, cam, is_person, det = analyse(probs, fmaps, meta, fcfg, rec.w, rec.h, keep, smooth,
                                               person_keep)
            if moved is not None and is_person and not peak_moved(cam, moved):
                probs[:] = no_person(probs, meta.person_index)
                cls, is_person, det = int(np.argmax(probs)), False, Detections.empty()
                cam = cam_batch(fmaps[None], meta.dense_kernel, np.array([cls]))[0]
            if rec.zoom is not None:  # never for an image folder (zoom.Zoom.look)
                zoom_prob = rec.zoom.prob
                if cfg.smooth_window_s > 0:
                    zoom_prob = camera_history(zoom_histories, rec.camera, cfg.smooth_window_s,
                                               cfg.smooth).update(rec.pts, zoom_prob)
                by_zoom = zoomed(probs, fmaps, meta, fcfg, zoom_prob, rec.zoom, rec.w, rec.h)
                if by_zoom is not None:
                    cls, cam, is_person, det = by_zoom
                if cfg.zoom_sustain_s:
                    history = camera_history(sustain_histories, rec.camera, cfg.zoom_sustain_s, "min")
                    if history.update(rec.pts, float(probs[meta.person_index])) < fcfg.score_threshold:
                        is_person, det = False, Detections.empty()  # not up for the whole window yet
            maps.release(mslot)
            if annotate:
                frame = rings[rec.camera].view(rec.frame_slot)["frame"][: rec.h, : rec.w]
                annotate_frame(frame, cam, is_person, det, float(probs[meta.person_index]), cfg)
            det = to_frame_coordinates(det, rec)
            rec.probs, rec.cls, rec.person, rec.cam = probs, cls, is_person, cam
            rec.xyxy, rec.scores, rec.t_post = det.xyxy, det.scores, time.monotonic()
            results.put((rec.frame_slot, rec))
            counters.add("posted")
    finally:
        results.put(EOS)
