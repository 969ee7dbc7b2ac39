"""The baselines gapstream is measured against, run inside a worker process: the original
project's naive Keras loop (the reference) and OpenCV's HOG people detector.

HOG may run under another interpreter (OpenCV 5 has no HOGDescriptor), so this module imports
only the standard library at load time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .machine import cpu_seconds
from .methods import decode_frames


def _boxes(heat: Any, threshold: float) -> list:
    import cv2
    import numpy as np

    mask = (heat >= threshold * float(heat.max())).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [stats[i, :4].tolist() for i in range(1, count)]


def w_reference(spec: dict) -> dict:
    """The original project's loop: one frame at a time, all in Python, in one process."""
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return {"skipped": "TensorFlow is not installed (pip install 'gapstream[train]')"}
    import cv2
    import numpy as np

    from ..cam import PAPER_THRESHOLD
    from ..training.build import dense_weights, dual_output, model_info
    from ..training.export import load_keras

    km = load_keras(spec["keras"])
    model = dual_output(km)
    kernel, _ = dense_weights(km)
    size = int(km.input_shape[1])
    model.predict(np.zeros((1, size, size, 3), np.float32), verbose=0)  # build the predict function
    lat: list[float] = []
    t0, c0 = time.perf_counter(), cpu_seconds()
    for frame in decode_frames(spec["clip"], spec.get("frames", 0)):
        t = time.perf_counter()
        h, w = frame.shape[:2]
        x = cv2.resize(frame, (size, size)).astype(np.float32)[None]
        probs, maps = model.predict(x, verbose=0)
        cls = int(np.argmax(probs[0]))
        cam = np.zeros(maps.shape[1:3], np.float32)
        for c in range(maps.shape[3]):  # the per-channel loop of the reference
            cam += kernel[c, cls] * maps[0, :, :, c]
        cam = np.maximum(cam, 0)
        cam = cam / cam.max() if cam.max() > 0 else cam
        heat = cv2.resize(cam, (w, h), interpolation=cv2.INTER_CUBIC)
        boxes = _boxes(heat, PAPER_THRESHOLD) if cls == 1 else []
        color = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
        out = cv2.addWeighted(frame, 0.6, color, 0.4, 0)
        for x1, y1, bw, bh in boxes:
            cv2.rectangle(out, (x1, y1), (x1 + bw, y1 + bh), (0, 255, 0), 2)
        lat.append((time.perf_counter() - t) * 1000)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"frames": len(lat), "wall_s": wall, "cpu_s": cpu, "latency_ms": lat,
            "extra": {"keras": spec["keras"], "model": model_info(km), "channels": int(kernel.shape[0])}}


def _hog() -> Any:
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in OpenCV 5)")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


HOG_PARAMS = {"winStride": (8, 8), "padding": (8, 8), "scale": 1.05}


def w_hog(spec: dict) -> dict:
    hog = _hog()
    lat: list[float] = []
    t0, c0 = time.perf_counter(), cpu_seconds()
    for frame in decode_frames(spec["clip"], spec.get("frames", 0)):
        t = time.perf_counter()
        hog.detectMultiScale(frame, **HOG_PARAMS)
        lat.append((time.perf_counter() - t) * 1000)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    import cv2

    return {"frames": len(lat), "wall_s": wall, "cpu_s": cpu, "latency_ms": lat,
            "extra": {"opencv": cv2.__version__, "params": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in HOG_PARAMS.items()}}}


def w_hog_images(spec: dict) -> dict:
    """HOG detections (xyxy, SVM weight) and size of each image, for the accuracy benchmark."""
    import cv2
    import numpy as np

    hog = _hog()
    out = []
    t0 = time.perf_counter()
    for path in spec["images"]:
        img = cv2.imread(path)
        if img is None:
            out.append(None)
            continue
        rects, weights = hog.detectMultiScale(img, **HOG_PARAMS)
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) if len(rects) else rects
        out.append({"size": [img.shape[1], img.shape[0]], "boxes": boxes.tolist(),
                    "scores": np.asarray(weights, np.float64).ravel().tolist()})
    return {"images": out, "wall_s": time.perf_counter() - t0, "opencv": cv2.__version__}


def hog_python(arg: str | None) -> tuple[str | None, str]:
    """An interpreter whose OpenCV has HOGDescriptor, or None and why not."""
    for py in [arg or sys.executable]:
        if not py or not Path(py).exists():
            continue
        r = subprocess.run([py, "-c", "import cv2, av; cv2.HOGDescriptor; print(cv2.__version__)"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return py, r.stdout.strip()
    return None, ("no OpenCV with HOGDescriptor (OpenCV 5 removed it): install "
                  "opencv-python-headless<5 or pass --hog-python")
