"""Motion-region zoom: a crop model on square crops around what moves, so that far persons count.

The whole frame runs at a long side of 640, so a person 3 % of a 720p frame tall is under one
16-px cell of the conv map. NVRs such as Frigate run their detector on regions around motion
instead. Here each frame's moving blobs (the motion gate's running-average background, at
:data:`MASK_WIDTH` px wide) give up to ``crops`` square crops of the full-size frame: twice the
blob's longer side, at least ``1 / min_side`` of the frame height, at most its shorter side.
Each crop runs through a crop model at ``input_size`` square in the inference stage, which
sends the crops' regions, person probabilities and person CAMs on in the :class:`FrameRecord`.
The post stage smooths the highest crop probability like the whole frame's and keeps the larger;
where the crops decide, their boxes are the frame's (:func:`crop_detections`).
Screened offline by ``benchmarks/zoom.py`` (stops 17 and 18).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .cam import cam_batch, localize
from .config import MotionConfig, PostConfig, ZoomConfig
from .detections import Detections
from .gapmodel import GapModel
from .meta import ModelMeta
from .motion import MASK_WIDTH, Background, CellMotion, cell_shares, mask_size, peak_moved
from .zones import Polygon, coverage, masked_probs

Box = tuple[int, int, int, int]


def blob_mask(moving: np.ndarray) -> np.ndarray:
    """The 0/1 uint8 mask whose connected parts are the blobs: ``moving`` opened (sensor noise
    gone) and dilated (one person's parts joined)."""
    m = cv2.morphologyEx(moving, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    return cv2.dilate(m, np.ones((5, 5), np.uint8))


def blob_stats(moving: np.ndarray, min_area: int, blobs: np.ndarray | None = None
               ) -> list[tuple[int, int, int, int, int]]:
    """Every blob of a 0/1 uint8 mask of at least ``min_area`` pixels, the largest first: its box
    ``(x0, y0, x1, y1)`` in mask pixels and its area. ``blobs``: the mask's :func:`blob_mask`, if
    already made."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(blob_mask(moving) if blobs is None else blobs,
                                                      connectivity=8)
    kept = sorted((stats[i] for i in range(1, n) if stats[i, 4] >= min_area), key=lambda s: -s[4])
    return [(int(s[0]), int(s[1]), int(s[0] + s[2]), int(s[1] + s[3]), int(s[4])) for s in kept]


def moving_blobs(moving: np.ndarray, k: int, min_area: int, blobs: np.ndarray | None = None) -> list[Box]:
    """Boxes ``(x0, y0, x1, y1)`` in mask pixels of the ``k`` largest blobs of a 0/1 uint8 mask."""
    return [b[:4] for b in blob_stats(moving, min_area, blobs)[:k]]


def crop_box(blob: tuple[float, float, float, float], scale: float, width: int, height: int,
             min_side: float) -> Box:
    """A square frame region around ``blob`` (its pixels times ``scale``): twice its longer side,
    at least ``height / min_side``, at most the frame's shorter side, shifted inside the frame."""
    x0, y0, x1, y1 = (v * scale for v in blob)
    side = min(max(2 * max(x1 - x0, y1 - y0), height / min_side), height, width)
    return square_region((x0 + x1) / 2, (y0 + y1) / 2, side, width, height)


def square_region(x: float, y: float, side: float, width: int, height: int) -> Box:
    """The ``side`` px square centred on ``(x, y)``, shifted inside a ``width`` x ``height`` frame
    (``side`` at most its shorter side), in whole pixels: the one rounding every zoom crop uses."""
    left = min(max(x - side / 2, 0), width - side)
    top = min(max(y - side / 2, 0), height - side)
    s, left_i, top_i = round(side), round(left), round(top)
    return left_i, top_i, left_i + s, top_i + s


def peak_regions(scores: np.ndarray, width: int, height: int, side: int, n: int) -> list[Box]:
    """Square ``side`` px regions of a ``width`` x ``height`` frame centred on the ``n`` highest cells
    of a per-cell score map ``(h, w)`` (the static look), shifted inside the frame; a cell whose
    centre lies in an earlier region is skipped, so that two regions show two places."""
    gh, gw = scores.shape
    regions: list[Box] = []
    for flat in np.argsort(-scores, axis=None):
        cy, cx = divmod(int(flat), gw)
        x, y = (cx + 0.5) * width / gw, (cy + 0.5) * height / gh
        if any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in regions):
            continue
        regions.append(square_region(x, y, side, width, height))
        if len(regions) == n:
            break
    return regions


def person_scores(maps: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """Per-cell person evidence ``(..., h, w)`` of conv ``maps (..., h, w, C)``: the person CAM before
    its ReLU, whose highest cells the static look centres its crops on."""
    return maps @ meta.dense_kernel[:, meta.person_index]


def static_regions(scores: np.ndarray, width: int, height: int, min_side: float, n: int) -> list[Box]:
    """The static look's ``n`` regions: :func:`peak_regions` of the zoom's smallest crop size
    (``height / min_side``, at most the frame's shorter side)."""
    return peak_regions(scores, width, height, int(min(height / min_side, height, width)), n)


def moved_cells(mask: np.ndarray, region: Box, width: int, grid: tuple[int, int]) -> np.ndarray:
    """Which cells of a crop's ``grid`` (h, w) hold any pixel of a 0/1 motion ``mask`` (at
    ``MASK_WIDTH`` px wide, of a frame ``width`` px wide) inside the crop's frame ``region``: 1.0 or 0.0."""
    s = mask.shape[1] / width
    x0, y0, x1, y1 = region
    top, left = int(y0 * s), int(x0 * s)
    part = mask[top: max(top + 1, round(y1 * s)), left: max(left + 1, round(x1 * s))]
    if part.size == 0:
        return np.zeros(grid, np.float32)
    share = cv2.resize(part.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    return (share > 0).astype(np.float32)


def cut(frame: np.ndarray, regions: list[Box], side: int) -> np.ndarray:
    """The ``regions`` of an RGB ``frame``, each resized to ``side`` x ``side``: ``(K, side, side, 3)``."""
    return np.stack([cv2.resize(frame[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA)
                     for x0, y0, x1, y1 in regions])


def masked_crops(regions: list[Box], maps: np.ndarray, masks: Sequence[Polygon], width: int, height: int,
                 meta: ModelMeta) -> tuple[np.ndarray, np.ndarray]:
    """The crops' person probabilities pooled over the cells the exclusion ``masks`` (polygons in
    0-1 frame coordinates, ``source.masks``) leave, as the whole frame's are, and their conv
    ``maps (K, h, w, C)`` with the masked cells zeroed; 0 for a crop with no cell left."""
    probs = np.zeros(len(regions), np.float32)
    kept = maps.copy()
    for k, (x0, y0, x1, y1) in enumerate(regions):
        in_crop = [[((px * width - x0) / (x1 - x0), (py * height - y0) / (y1 - y0)) for px, py in poly]
                   for poly in masks]
        keep = 1.0 - coverage(in_crop, *maps.shape[1:3])
        kept[k] *= keep[:, :, None]
        if (keep >= 0.5).any():  # else the bias alone would decide, as in post.analyse
            probs[k] = masked_probs(maps[k], meta, keep)[meta.person_index]
    return probs, kept


class Regions:
    """One camera's zoom regions; :meth:`find` is called once per frame, in order."""

    def __init__(self, cfg: ZoomConfig, motion: MotionConfig) -> None:
        self.cfg, self.warmup = cfg, motion.warmup_frames
        self._background = Background(motion.threshold, motion.background_alpha)
        self.moving = np.zeros((0, 0), np.float32)  # the last frame's mask, MASK_WIDTH px wide
        self.blobs = np.zeros((0, 0), np.uint8)  # its blob_mask (once the background has formed)

    @property
    def frames(self) -> int:
        """The frames the background has learnt since it (re)started."""
        return self._background.frames

    def find(self, frame: np.ndarray) -> list[Box]:
        """The square regions of ``frame`` (RGB) around its largest moving blobs; none while the
        background is still being learnt (again after the frame size changes, as a stream that
        reconnects at another resolution does: the background starts afresh then)."""
        h, w = frame.shape[:2]
        moving = self._background.moving(frame, mask_size(h, w))
        self.moving = moving
        if self._background.frames <= self.warmup:
            return []
        moving_u8 = moving.astype(np.uint8)
        self.blobs = blob_mask(moving_u8)
        boxes = moving_blobs(moving_u8, self.cfg.crops, self.cfg.min_area, self.blobs)
        return [crop_box(b, w / MASK_WIDTH, w, h, self.cfg.min_side) for b in boxes]


@dataclass(frozen=True)
class ZoomLook:
    """One frame's crops: regions ``(K, 4)`` in the frame's pixels, person probabilities ``(K,)``
    and person CAMs ``(K, h, w)`` in [0, 1]. K is 0 when nothing moved. ``ran``: the crop model
    ran on this frame (False where it is an earlier frame's look, kept by ``zoom.every``)."""

    regions: np.ndarray
    probs: np.ndarray
    cams: np.ndarray
    ran: bool = True

    @property
    def crops_run(self) -> int:
        """The crops the crop model ran on for this frame."""
        return len(self.regions) if self.ran else 0

    @property
    def prob(self) -> float:
        """The frame's zoom probability: its highest crop's (0 without crops)."""
        return float(self.probs.max()) if len(self.probs) else 0.0


@dataclass(frozen=True)
class MotionCrops:
    """One frame's motion crops, found and cut before the crop model runs: ``regions`` in frame
    pixels, ``crops (K, s, s, 3)`` (None without regions), for ``zoom.peak_on_motion`` the frame's
    :func:`blob_mask`, and its motion on the whole frame's grid (the gate's background is the
    zoom's: the same settings, the same frames)."""

    regions: list[Box]
    crops: np.ndarray | None
    blobs: np.ndarray | None = None
    motion: CellMotion | None = None  # the frame's motion on the whole frame's grid, for the gate


@dataclass(frozen=True)
class ZoomSpec:
    """What the inference process needs to build its :class:`Zoom` (interpreters do not pickle)."""

    cfg: ZoomConfig
    motion: MotionConfig
    model_path: str
    stills: tuple[int, ...] = ()  # cameras that are image folders: unrelated pictures, no motion
    masks: tuple[Sequence[Polygon], ...] = ()  # each camera's exclusion polygons (source.masks)
    threshold: float | None = None  # the crop model's zoom_threshold (pipeline.resolve_post)
    sustain_s: float | None = None  # the crop model's zoom_sustain_s (pipeline.resolve_post)
    static_peaks: int = 0  # the static look's crops a frame (pipeline.plan_zoom); 0: none
    static_threshold: float = 1.0  # the least probability a static crop counts with

    def build(self, threads: int | None) -> Zoom:
        return Zoom(self.cfg, self.motion, self.model_path, threads, self.stills, self.masks,
                    self.static_peaks, self.static_threshold)


class Zoom:
    """The crop model and each camera's :class:`Regions` (in the inference stage)."""

    def __init__(self, cfg: ZoomConfig, motion: MotionConfig, model_path: str, threads: int | None,
                 stills: tuple[int, ...] = (), masks: tuple[Sequence[Polygon], ...] = (),
                 static_peaks: int = 0, static_threshold: float = 1.0) -> None:
        self.cfg, self.motion, self.stills, self.masks = cfg, motion, stills, masks
        self.static_peaks, self.static_threshold = static_peaks, static_threshold
        self.model = GapModel(model_path, threads, (cfg.input_size, cfg.input_size))
        self._regions: dict[int, Regions] = {}
        self._last: dict[int, tuple[int, ZoomLook]] = {}  # per camera: frames since its crops ran, their look
        grid = self.model.meta.maps_shape(self.model.input_size)[:2]
        self._none = ZoomLook(np.zeros((0, 4), np.int32), np.zeros(0, np.float32),
                              np.zeros((0, *grid), np.float32))
        # Finding and cutting the motion crops needs only the frames, and OpenCV lets go of the GIL,
        # so the inference stage does it here while the whole-frame network runs (prepare_batch).
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="gapstream-zoom")

    def prepare(self, camera: int, frame: np.ndarray, grid: tuple[int, int] | None = None
                ) -> MotionCrops | None:
        """Camera ``camera``'s next ``frame`` (RGB, full size): its motion regions, cut, and with
        ``grid`` (the whole frame's conv-map grid, h x w) and the motion gate on, its
        :class:`motion.CellMotion`; None for an image folder. Called once per frame, in order,
        before :meth:`look` of that frame."""
        if camera in self.stills:
            return None
        if camera not in self._regions:
            self._regions[camera] = Regions(self.cfg, self.motion)
        regions = self._regions[camera]
        found = regions.find(frame)
        motion = None
        if grid is not None and self.motion.enabled:  # measured for the gate only when it is on
            motion = CellMotion(cell_shares(regions.moving, *grid), regions.frames)
        if not found:
            return MotionCrops(found, None, None, motion)
        blobs = regions.blobs if self.cfg.peak_on_motion else None
        return MotionCrops(found, cut(frame, found, self.cfg.input_size), blobs, motion)

    def prepare_batch(self, frames: list[tuple[int, np.ndarray]], grid: tuple[int, int] | None = None
                      ) -> Future[list[MotionCrops | None]]:
        """:meth:`prepare` of each ``(camera, frame)`` in order, on the helper thread."""
        return self._helper.submit(lambda: [self.prepare(camera, frame, grid) for camera, frame in frames])

    def look(self, camera: int, frame: np.ndarray, scores: np.ndarray | None = None,
             prepared: MotionCrops | None = None) -> ZoomLook | None:
        """The crops of camera ``camera``'s next ``frame`` (RGB, full size) through the crop model;
        None for an image folder. ``scores``: the whole frame's per-cell person scores ``(h, w)``,
        whose highest cells the static look's crops centre on (``static_peaks``). ``prepared``: this
        frame's :meth:`prepare`, if already made."""
        if camera in self.stills:
            return None
        prepared = prepared or self.prepare(camera, frame)
        assert prepared is not None
        found, crops = list(prepared.regions), prepared.crops
        moving = len(found)
        if self.static_peaks and scores is not None:
            h, w = frame.shape[:2]
            static = static_regions(scores, w, h, self.cfg.min_side, self.static_peaks)
            found += static
            if static:
                still = cut(frame, static, self.cfg.input_size)
                crops = still if crops is None else np.concatenate([crops, still])
        if crops is None:
            self._last.pop(camera, None)
            return self._none
        age, last = self._last.get(camera, (0, self._none))
        if 0 < age < self.cfg.every:  # between two runs of the crop model (zoom.every)
            self._last[camera] = (age + 1, last)
            return replace(last, ran=False)
        probs, maps = self.model.predict(crops)
        meta = self.model.meta
        person = probs[:, meta.person_index].astype(np.float32)
        if camera < len(self.masks) and self.masks[camera]:  # what is masked is never a person
            person, maps = masked_crops(found, maps, self.masks[camera], frame.shape[1], frame.shape[0], meta)
        static = person[moving:]
        static[static < self.static_threshold] = 0.0  # a still thing counts only when the crop model is sure
        cams = cam_batch(maps, meta.dense_kernel, np.full(len(found), meta.person_index))
        if prepared.blobs is not None:  # zoom.peak_on_motion: a parked car beside what moved is not it
            grid = cams.shape[1:3]
            for k in range(moving):
                if not peak_moved(cams[k], moved_cells(prepared.blobs, found[k], frame.shape[1], grid)):
                    person[k] = 0.0
        look = ZoomLook(np.array(found, np.int32), person, cams)
        self._last[camera] = (1, look)
        return look


def grid_cells(box: Sequence[int], grid: tuple[int, int], width: int, height: int) -> Box:
    """The cells ``(cx0, cy0, cx1, cy1)`` (end exclusive, at least one) of a ``grid`` (h, w) laid over a
    ``width`` x ``height`` image that the integer pixel ``box`` (x0, y0, x1, y1) touches."""
    gh, gw = grid
    x0, y0, x1, y1 = box
    cx0, cy0 = min(gw - 1, x0 * gw // width), min(gh - 1, y0 * gh // height)
    return cx0, cy0, max(cx0 + 1, min(gw, -(-x1 * gw // width))), max(cy0 + 1, min(gh, -(-y1 * gh // height)))


def frame_cam(look: ZoomLook, persons: Sequence[bool], grid: tuple[int, int], width: int,
              height: int) -> np.ndarray | None:
    """The person crops' CAMs on the whole frame's ``grid`` (h, w) of a ``width`` x ``height``
    frame: each resized into the cells its region covers, the largest where they overlap, then
    scaled to a peak of 1; None when no crop in ``persons`` is a person. Where the crops decide,
    this is the frame's CAM, so that its heat-map, zone scores and snapshots show what the boxes
    come from rather than the whole frame's own evidence."""
    if not any(persons):
        return None
    out = np.zeros(grid, np.float32)
    for region, cam, person in zip(look.regions.tolist(), look.cams, persons):
        if not person:
            continue
        cx0, cy0, cx1, cy1 = grid_cells(region, grid, width, height)
        patch = cv2.resize(cam, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA)
        out[cy0:cy1, cx0:cx1] = np.maximum(out[cy0:cy1, cx0:cx1], patch)
    peak = float(out.max())
    return out / peak if peak > 0 else out


def crop_detections(look: ZoomLook, cfg: PostConfig) -> tuple[list[bool], Detections]:
    """Which crops are persons on their own, and their boxes in the frame's pixels: the run-time
    rule (:func:`cam.localize`) on each crop's CAM, so that a crop is decided once."""
    persons, boxes, scores = [], [], []
    for (x0, y0, x1, y1), p, cam in zip(look.regions.tolist(), look.probs.tolist(), look.cams):
        is_person, det = localize(cam, np.array([1.0 - p, p], np.float32), 1, x1 - x0, y1 - y0, cfg)
        persons.append(is_person)
        if is_person and len(det):
            boxes.append(det.xyxy + np.array([x0, y0, x0, y0], np.float32))
            scores.append(det.scores)
    if not boxes:
        return persons, Detections.empty()
    return persons, Detections(np.concatenate(boxes).astype(np.float32),
                               np.concatenate(scores).astype(np.float32))
