"""Small, composable detection results (in the spirit of supervision's Detections)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """Boxes in pixel coordinates ``xyxy (N, 4)`` with a score each ``(N,)``."""

    xyxy: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def scaled(self, sx: float, sy: float) -> Detections:
        """The same boxes with x scaled by ``sx`` and y by ``sy`` (into another frame size)."""
        if sx == 1 and sy == 1:
            return self
        return Detections((self.xyxy * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32),
                          self.scores)

    def to_list(self) -> list[dict]:
        """JSON-ready list of ``{"box": [x1, y1, x2, y2], "score": s}``."""
        return [
            {"box": [round(float(v), 1) for v in box], "score": round(float(s), 4)}
            for box, s in zip(self.xyxy, self.scores)
        ]
