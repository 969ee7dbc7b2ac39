"""What travels between the stage processes (FrameRecord) and what the pipeline yields (Result)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .detections import Detections
from .motion import CellMotion
from .zoom import ZoomLook


@dataclass
class FrameRecord:
    """The small per-frame record that follows a frame through the stages (pixels stay in the rings).

    Each stage fills in its own fields: capture the first group, inference the second,
    post-processing the third, and the pipeline ``t_out`` when the sinks are done.
    Times are ``time.monotonic()`` seconds.
    """

    # capture
    index: int
    pts: float  # source timestamp, seconds
    h: int  # size of the frame as stored in its ring slot
    w: int
    t_cap: float
    src_h: int = 0  # the frame's own size when stored scaled down: to fit its slot, or decoded
    # straight to the model's input size (source.decode_to_model); 0: h, w
    src_w: int = 0
    # inference
    frame_slot: int = -1
    t_inf0: float | None = None
    t_inf: float | None = None
    batch: int = 0
    # This frame's conv-map grid: the maps slot is sized for the largest grid of the run (with
    # several cameras each has its own input size), so post-processing slices [:maps_h, :maps_w].
    maps_h: int = 0
    maps_w: int = 0
    zoom: ZoomLook | None = None  # the motion-region crops (gapstream/zoom.py); None: zoom is off
    motion: CellMotion | None = None  # the zoom's motion on this grid, which the gate then reuses
    # post-processing
    probs: np.ndarray | None = None
    cls: int = -1
    person: bool = False
    xyxy: np.ndarray | None = None
    scores: np.ndarray | None = None
    cam: np.ndarray | None = None
    t_post: float | None = None
    # pipeline
    t_out: float | None = None
    camera: int = 0  # index of the camera in a run with several (gapstream.multi)


@dataclass
class Result:
    """One processed frame. ``frame`` is a view into shared memory, valid until the next
    result is requested: copy it to keep it (later its slot holds another frame; after the run
    it keeps its last pixels)."""

    index: int
    pts: float
    probs: np.ndarray
    person_prob: float
    is_person: bool
    detections: Detections
    cam: np.ndarray  # low-resolution CAM of the predicted class, in [0, 1]
    frame: np.ndarray
    latency_ms: float
    camera: str = ""  # the camera's name in a run with several cameras (and in its JSON line)
    captured_at: float = 0.0  # Unix seconds when the frame was captured (0: unknown)

    @classmethod
    def from_record(cls, rec: FrameRecord, frame: np.ndarray, person_index: int, now: float) -> Result:
        """The result of a post-processed record whose frame is ``frame``, delivered at ``now``."""
        assert rec.probs is not None and rec.xyxy is not None and rec.scores is not None
        assert rec.cam is not None
        return cls(
            index=rec.index, pts=rec.pts, probs=rec.probs, person_prob=float(rec.probs[person_index]),
            is_person=rec.person, detections=Detections(rec.xyxy, rec.scores), cam=rec.cam,
            frame=frame, latency_ms=(now - rec.t_cap) * 1000,
            # The stages stamp monotonic time; events are in Unix time, so the capture instant is
            # carried over by its age, read on both clocks at once.
            captured_at=time.time() - (now - rec.t_cap),
        )

    def to_dict(self) -> dict:
        """The JSON Lines record of this frame."""
        return {
            "frame": self.index,
            "time": round(self.pts, 4),
            "person_prob": round(self.person_prob, 4),
            "person": self.is_person,
            "boxes": self.detections.to_list(),
            "latency_ms": round(self.latency_ms, 1),
        } | ({"camera": self.camera} if self.camera else {})
