"""The run-time model: a dual-output GAP TFLite model plus its sidecar metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .cam import pool_probs
from .errors import ModelError
from .meta import ModelMeta, load_meta
from .runtime import make_interpreter

_RESIZE = {"bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


class GapModel:
    """Batched inference on a GAP model: ``predict(frames) -> (probs, maps)``.

    Inputs are RGB uint8 images at the model's input size; outputs are float32
    probabilities ``(N, num_classes)`` and activation maps ``(N, h, w, C)``, dequantised
    when the model is integer-quantised. When the metadata carries the dense layer as trained
    (``pool_kernel``), the probabilities are pooled here from the dequantised maps. One
    interpreter is kept per batch size so that partial batches never pay for padding or
    re-allocation twice.
    """

    def __init__(self, path: str | Path, num_threads: int | None = None,
                 input_size: tuple[int, int] | None = None, graph_probs: bool = False) -> None:
        self.path = Path(path)
        self.graph_probs = graph_probs  # the graph's own probabilities even with pool_kernel (benchmarks)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} not found")
        self.meta: ModelMeta = load_meta(self.path)
        self.num_threads = num_threads
        # Fully convolutional models run at any input size (see ModelMeta.input_size_for).
        self.input_size: tuple[int, int] = tuple(input_size or self.meta.input_size)  # type: ignore[assignment]
        self._interpreters: dict[int, tuple[Any, dict, dict, dict]] = {}
        self._get(1)  # validate the graph now, not in the middle of a stream

    def preprocess(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Resize one RGB uint8 frame to the model input size."""
        h, w = self.input_size
        return cv2.resize(frame, (w, h), dst=out, interpolation=_RESIZE.get(self.meta.resize, 1))

    def _get(self, n: int) -> tuple[Any, dict, dict, dict]:
        if n in self._interpreters:
            return self._interpreters[n]
        interp = make_interpreter(str(self.path), self.num_threads)
        inp = interp.get_input_details()
        if len(inp) != 1:
            raise ModelError(f"{self.path}: expected one input, found {len(inp)}")
        h, w = self.input_size
        try:
            if [n, h, w] != [int(v) for v in inp[0]["shape"][:3]]:
                interp.resize_tensor_input(inp[0]["index"], [n, h, w, 3], strict=False)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: cannot allocate a batch of {n}: {exc}") from exc
        inp = interp.get_input_details()[0]
        outs = interp.get_output_details()
        probs = [o for o in outs if len(o["shape"]) == 2]
        maps = [o for o in outs if len(o["shape"]) == 4]
        if len(probs) != 1 or len(maps) != 1:
            raise ModelError(
                f"{self.path}: expected two outputs (probabilities and conv maps), "
                f"found shapes {[list(o['shape']) for o in outs]}"
            )
        if tuple(inp["shape"][1:3]) != (h, w):
            raise ModelError(f"{self.path}: input {list(inp['shape'])} disagrees with metadata {h}x{w}")
        if int(maps[0]["shape"][3]) != self.meta.dense_kernel.shape[0]:
            raise ModelError(f"{self.path}: conv maps have {maps[0]['shape'][3]} channels, dense weights "
                             f"{self.meta.dense_kernel.shape[0]}")
        entry = (interp, inp, probs[0], maps[0])
        self._interpreters[n] = entry
        return entry

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run a batch ``(N, H, W, 3)`` of RGB uint8 images at the input size."""
        interp, inp, p_out, m_out = self._get(len(batch))
        interp.set_tensor(inp["index"], _quantize(batch, inp))
        interp.invoke()
        maps = _dequantize(interp.get_tensor(m_out["index"]), m_out)
        if self.meta.pool_kernel is not None and not self.graph_probs:
            # An int8 graph quantises the per-cell scores before its top-k: pooling the
            # dequantised maps in float keeps int8 decisions close to the float model's (on
            # INRIA Train/neg, false positives 8.0 % in-graph, 2.3 % here, float 1.7 %).
            kernel, bias = self.meta.pool_weights()
            return pool_probs(maps, kernel, bias, self.meta.pooling, self.meta.topk_share), maps
        return _dequantize(interp.get_tensor(p_out["index"]), p_out), maps


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    if scale == 1.0 and zero == 0 and dtype == np.uint8:
        return np.ascontiguousarray(x, np.uint8)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if x.dtype == np.float32 or scale == 0:
        return np.array(x, np.float32)
    return (x.astype(np.float32) - zero) * scale
