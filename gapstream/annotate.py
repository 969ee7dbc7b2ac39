"""Drawing on frames: the CAM heat-map blend and the boxes (kept apart from the CAM maths)."""

from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections


def blend(frame: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> None:
    """Blend a JET heat-map of ``cam`` (frame-sized, [0, 1]) onto an RGB ``frame`` in place."""
    heat = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)
    cv2.cvtColor(heat, cv2.COLOR_BGR2RGB, dst=heat)
    cv2.addWeighted(frame, 1.0 - alpha, heat, alpha, 0.0, dst=frame)


def draw(frame: np.ndarray, det: Detections, prob: float | None = None) -> None:
    """Draw boxes (and the frame-level person probability) on an RGB frame in place."""
    thick = max(1, round(min(frame.shape[:2]) / 240))
    for (x1, y1, x2, y2), s in zip(det.xyxy.astype(int), det.scores):
        cv2.rectangle(frame, (x1, y1), (x2, y2), (0, 255, 0), thick)
        cv2.putText(frame, f"person {s:.2f}", (x1 + 2, max(y1 - 4, 12)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 255, 0), thick)
    if prob is not None:
        cv2.putText(frame, f"p(person)={prob:.2f}", (8, 20 * thick),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, (255, 255, 255), thick)
