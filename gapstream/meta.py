"""Model metadata: the sidecar JSON that travels beside every exported .tflite file.

``model.tflite`` has two outputs (class probabilities ``(N, 2)`` and the last conv
activation maps ``(N, h, w, C)``); ``model.json`` beside it carries what the runtime
must not guess: label order, input preprocessing, the dense weights that turn the
maps into a Class Activation Map, and the SHA-256 of the .tflite it belongs to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cam import PAPER_THRESHOLD
from .errors import ModelError

FORMAT = "gapstream-gap/1"


@dataclass
class ModelMeta:
    """Everything the runtime needs besides the .tflite graph."""

    labels: list[str]
    person_index: int
    input_size: tuple[int, int]  # (height, width) trained at; with keep_aspect, its long side is kept
    dense_kernel: np.ndarray  # (C, num_classes)
    dense_bias: np.ndarray  # (num_classes,)
    # Input is RGB uint8 in [0, 255]; the graph itself rescales to the backbone's range.
    input_color: str = "RGB"
    input_range: tuple[float, float] = (0.0, 255.0)
    resize: str = "bilinear"
    quantization: str = "float32"
    backbone: str = "mobilenet"
    alpha: float = 0.5
    output_stride: int = 32  # input pixels per conv-map cell
    # "fixed": every frame is resized to input_size. "keep_aspect": the network is fully
    # convolutional, so each source gets an input of the same long side and its own aspect ratio.
    input_mode: str = "fixed"
    pooling: str = "gap"  # how the graph pools the class score map into probabilities
    # keep_aspect: the long side frames are run at (0: the trained one). Larger than the training
    # canvas when the footage's persons are smaller than the trained ones.
    input_long_side: int = 0
    cam_threshold: float = PAPER_THRESHOLD  # box threshold; eval --tune-threshold tunes it
    # Width and height factors about each box's centre: a CAM region covers the most telling
    # part of a person (often the torso); eval --tune-threshold fits these on validation boxes.
    box_scale: tuple[float, float] = (1.0, 1.0)
    # The person probability a frame needs to count as a person frame (post.score_threshold
    # unless the config sets it); eval --tune-decision picks it on held-out real negatives.
    decision_threshold: float = 0.5
    # A crop model's: the frame's decision threshold while it is the zoom's crop model (the frame's
    # and the crops' probabilities alike), chosen on validation footage with the zoom on
    # (benchmarks/operating_points.py --zoom-meta). None: the frame model's decision_threshold.
    zoom_threshold: float | None = None
    # ... and how long a zoomed frame's probability must have stayed at or above it (the minimum
    # over that many seconds decides; post.zoom_sustain_s). None: not at all (0).
    zoom_sustain_s: float | None = None
    # ... and its static look (zoom.static_peaks, zoom.static_threshold): crops at the whole frame's
    # highest person-score cells, moving or not, counted only at or above the threshold. None: off.
    zoom_static_peaks: int | None = None
    zoom_static_threshold: float | None = None
    # The dense layer as trained, (C, K) and (K,), when the CAM kernel above is a derived one
    # (scene models store the person-minus-no-person difference). The run time pools these
    # per-cell scores itself (cam.pool_probs) instead of trusting an int8 graph's pooling.
    pool_kernel: np.ndarray | None = None
    pool_bias: np.ndarray | None = None
    topk_share: float = 0.05  # the share of cells a "topk" model pools
    tflite_sha256: str = ""
    metrics: dict = field(default_factory=dict)

    def pool_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The dense weights whose per-cell scores the model pools into its logits."""
        if self.pool_kernel is not None and self.pool_bias is not None:
            return self.pool_kernel, self.pool_bias
        return self.dense_kernel, self.dense_bias

    def input_size_for(self, height: int, width: int, long_side: int = 0) -> tuple[int, int]:
        """The network input (h, w) for frames of ``height x width``.

        ``keep_aspect`` models keep the frame's aspect ratio at ``long_side`` (default: the
        model's ``input_long_side``, else its trained long side), rounded to whole conv-map
        cells, so small persons are not squashed.
        """
        if self.input_mode != "keep_aspect":
            return self.input_size
        long_side = long_side or self.input_long_side or max(self.input_size)
        cell = self.output_stride
        s = long_side / max(height, width, 1)
        return (max(cell, round(height * s / cell) * cell), max(cell, round(width * s / cell) * cell))

    def maps_shape(self, input_size: tuple[int, int]) -> tuple[int, int, int]:
        """Shape (h, w, C) of the conv maps for an input of ``input_size``."""
        ih, iw = input_size
        return (-(-ih // self.output_stride), -(-iw // self.output_stride), self.dense_kernel.shape[0])

    def to_json(self) -> dict:
        d = asdict(self)
        d["format"] = FORMAT
        d["dense_kernel"] = np.asarray(self.dense_kernel, np.float32).tolist()
        d["dense_bias"] = np.asarray(self.dense_bias, np.float32).tolist()
        d["input_size"] = list(self.input_size)
        d["input_range"] = list(self.input_range)
        d["box_scale"] = list(self.box_scale)
        for key in ("zoom_threshold", "zoom_sustain_s", "zoom_static_peaks", "zoom_static_threshold"):
            if d[key] is None:
                del d[key]
        for key in ("pool_kernel", "pool_bias"):
            if d[key] is None:
                del d[key]
            else:
                d[key] = np.asarray(d[key], np.float32).tolist()
        return d

    @classmethod
    def from_json(cls, d: dict, source: str = "metadata") -> ModelMeta:
        if d.get("format") != FORMAT:
            raise ModelError(f"{source}: not gapstream model metadata (format {d.get('format')!r})")
        try:
            kernel = np.asarray(d["dense_kernel"], np.float32)
            bias = np.asarray(d["dense_bias"], np.float32)
            meta = cls(
                labels=list(d["labels"]),
                person_index=int(d["person_index"]),
                input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                dense_kernel=kernel,
                dense_bias=bias,
                input_color=d.get("input_color", "RGB"),
                input_range=tuple(d.get("input_range", (0.0, 255.0))),
                resize=d.get("resize", "bilinear"),
                quantization=d.get("quantization", "float32"),
                backbone=d.get("backbone", "mobilenet"),
                alpha=float(d.get("alpha", 0.5)),
                output_stride=int(d.get("output_stride", 32)),
                input_mode=d.get("input_mode", "fixed"),
                pooling=d.get("pooling", "gap"),
                input_long_side=int(d.get("input_long_side", 0)),
                cam_threshold=float(d.get("cam_threshold", PAPER_THRESHOLD)),
                box_scale=(float(d.get("box_scale", (1, 1))[0]), float(d.get("box_scale", (1, 1))[1])),
                decision_threshold=float(d.get("decision_threshold", 0.5)),
                zoom_threshold=None if d.get("zoom_threshold") is None else float(d["zoom_threshold"]),
                zoom_sustain_s=None if d.get("zoom_sustain_s") is None else float(d["zoom_sustain_s"]),
                zoom_static_peaks=None if d.get("zoom_static_peaks") is None else int(d["zoom_static_peaks"]),
                zoom_static_threshold=(None if d.get("zoom_static_threshold") is None
                                       else float(d["zoom_static_threshold"])),
                pool_kernel=None if "pool_kernel" not in d else np.asarray(d["pool_kernel"], np.float32),
                pool_bias=None if "pool_bias" not in d else np.asarray(d["pool_bias"], np.float32),
                topk_share=float(d.get("topk_share", 0.05)),
                tflite_sha256=d.get("tflite_sha256", ""),
                metrics=dict(d.get("metrics", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed model metadata ({exc})") from exc
        if kernel.ndim != 2 or kernel.shape[1] != len(meta.labels) or bias.shape != (len(meta.labels),):
            raise ModelError(f"{source}: dense weights do not match the {len(meta.labels)} labels")
        if (meta.pool_kernel is None) != (meta.pool_bias is None) or (
                meta.pool_kernel is not None and (meta.pool_kernel.shape != kernel.shape
                                                  or meta.pool_bias.shape != bias.shape)):
            raise ModelError(f"{source}: pooling weights do not match the dense weights")
        if not 0 < meta.topk_share <= 1:
            raise ModelError(f"{source}: topk_share must be in (0, 1]")
        return meta


def sidecar_path(tflite_path: str | Path) -> Path:
    """The metadata file that belongs to a .tflite model."""
    return Path(tflite_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_meta(meta: ModelMeta, tflite_path: str | Path) -> Path:
    """Write the sidecar JSON for ``tflite_path``, stamping the model's hash."""
    meta.tflite_sha256 = file_sha256(tflite_path)
    out = sidecar_path(tflite_path)
    out.write_text(json.dumps(meta.to_json(), indent=1) + "\n")
    return out


def load_meta(tflite_path: str | Path) -> ModelMeta:
    """Read and check the sidecar of ``tflite_path``."""
    path = sidecar_path(tflite_path)
    if not path.is_file():
        raise ModelError(f"model metadata {path} not found (it must sit beside {tflite_path})")
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read model metadata ({exc})") from exc
    meta = ModelMeta.from_json(d, str(path))
    if meta.tflite_sha256 and meta.tflite_sha256 != file_sha256(tflite_path):
        raise ModelError(f"{tflite_path} does not match its metadata {path} (checksum differs)")
    return meta
