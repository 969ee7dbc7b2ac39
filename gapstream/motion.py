"""Motion gate: only the cells of the conv-map grid that saw motion recently may make a person.

Surveillance NVRs such as Frigate run their detector only where the picture moved. Here the
same idea is a per-cell keep mask (the one exclusion masks use, :func:`zones.masked_probs`):
a running-average background per camera, the share of each cell's pixels that differ from it,
and a hold time, so that a person who stops is still found for ``hold_s`` seconds. Static
look-alikes (posts, signs, parked shapes), the most persistent false alarms on held-out road
footage, never move. A person who stands still for longer than the hold time is missed: the
trade-off every motion-gated NVR makes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import MotionConfig

#: The width of the motion background and mask (the zoom's and the gate's): a fourth of a 1280-px
#: frame, so that common frame sizes shrink to it by a whole number, OpenCV's fast INTER_AREA path.
MASK_WIDTH = 320


def mask_size(height: int, width: int) -> tuple[int, int]:
    """The motion mask's ``(width, height)`` for a ``width`` x ``height`` frame: ``MASK_WIDTH`` wide,
    the frame's aspect."""
    return MASK_WIDTH, max(1, round(height * MASK_WIDTH / width))


class Background:
    """A running-average grey background at one size; :meth:`moving` marks what differs from it."""

    def __init__(self, threshold: float, alpha: float) -> None:
        self.threshold, self.alpha = threshold, alpha
        self._bg: np.ndarray | None = None
        self.frames = 0  # frames learnt since the background (re)started: its users' warm-up

    def moving(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A float32 0/1 mask of ``size`` (width, height): the pixels of the RGB ``frame`` that differ
        from the background by more than ``threshold`` grey levels; then the background learns the
        frame. A new size starts a new background from this frame (and ``frames`` from 1)."""
        grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), size,
                          interpolation=cv2.INTER_AREA).astype(np.float32)
        if self._bg is None or self._bg.shape != grey.shape:
            self._bg, self.frames = grey.copy(), 0
        self.frames += 1
        moving = (cv2.absdiff(grey, self._bg) > self.threshold).astype(np.float32)
        cv2.accumulateWeighted(grey, self._bg, self.alpha)
        return moving


def cell_shares(moving: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """Each conv-map cell's share of moving pixels in a 0/1 float32 motion mask: ``(grid_h, grid_w)``."""
    return cv2.resize(moving, (grid_w, grid_h), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class CellMotion:
    """One frame's motion on its conv-map grid, measured where the background already is (the
    zoom's, in the inference stage) for the gate to decide on: :func:`cell_shares` of the mask, and
    how many frames its background has learnt."""

    shares: np.ndarray
    frames: int


class MotionGate:
    """One camera's motion state; :meth:`keep` is called once per frame, in order."""

    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self._background = Background(cfg.threshold, cfg.background_alpha)
        self._last: np.ndarray | None = None  # per cell: the pts of its last motion

    def keep(self, frame: np.ndarray, pts: float, grid_h: int, grid_w: int,
             measured: CellMotion | None = None) -> np.ndarray | None:
        """Per-cell keep weights (1: moved within ``hold_s``, 0: static) for an RGB ``frame``, or
        None while the background is still being learnt (the first ``warmup_frames``).
        ``measured``: this frame's motion from a background of the same settings that has seen the
        same frames (the zoom's), so that this gate need not keep its own."""
        if measured is None:
            moving = self._background.moving(frame, mask_size(*frame.shape[:2]))
            measured = CellMotion(cell_shares(moving, grid_h, grid_w), self._background.frames)
        if self._last is None or self._last.shape != (grid_h, grid_w):  # the background restarted too
            self._last = np.full((grid_h, grid_w), -np.inf)
        active = measured.shares >= self.cfg.min_share
        if self.cfg.dilate:  # a person's evidence spills into the neighbouring cells
            active = cv2.dilate(active.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        self._last[active] = pts
        if measured.frames <= self.cfg.warmup_frames:
            return None
        return (pts - self._last <= self.cfg.hold_s).astype(np.float32)


def peak_moved(cam: np.ndarray, moved: np.ndarray, share: float = 0.5) -> bool:
    """The decision gate: whether an open cell of ``moved`` holds at least ``share`` of the
    person CAM's maximum (``cam`` is scaled to [0, 1] by its maximum)."""
    return bool((cam * (moved >= 0.5)).max() >= share)
