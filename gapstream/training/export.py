"""Export a trained Keras classifier to dual-output TFLite models with sidecar metadata.

Both files have two outputs, probabilities ``(N, 2)`` and the last conv maps
``(N, h, w, C)``, a resizable batch dimension, and raw RGB pixels as input:

* ``gapstream_person_float32.tflite``: float32 weights and activations.
* ``gapstream_person_int8.tflite``: full-integer post-training quantisation calibrated
  on real training images; uint8 input (raw pixels), int8 outputs (dequantised by the
  runtime with each tensor's scale and zero point).

Each gets ``<stem>.json`` (see :mod:`gapstream.meta`) with labels, input size and the
dense weights that turn the maps into a Class Activation Map.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cam import PAPER_THRESHOLD
from ..errors import ModelError
from ..meta import ModelMeta, load_meta, save_meta
from .build import LABELS, PERSON_INDEX, dense_weights, dual_output, import_keras, model_info

log = logging.getLogger(__name__)

STEM = "gapstream_person"


def load_keras(path: str | Path) -> Any:
    """Load a model saved by training (``best.keras``)."""
    keras = import_keras()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Keras model {path} not found")
    from .fcn import spatial_pool_layer

    spatial_pool_layer()  # registers the scene model's pooling layer for deserialisation
    return keras.models.load_model(str(path), compile=False)


def calibration_images(data_root: str | Path, input_size: int, num: int = 200, seed: int = 0,
                       cache_dir: str | Path | None = None) -> np.ndarray:
    """``num`` training images (half person, half not, seeded) as uint8 ``(num, s, s, 3)``."""
    from .inria import default_cache_dir, load_images, load_inria

    data = load_inria(data_root, splits=("train",), seed=seed)
    split = data.train
    rng = np.random.default_rng(seed + 1)
    pos = np.flatnonzero(split.labels == 1)
    neg = np.flatnonzero(split.labels == 0)
    npos = min(len(pos), (num + 1) // 2)
    nneg = min(len(neg), num - npos)
    npos = min(len(pos), num - nneg)
    idx = np.sort(np.concatenate([rng.choice(pos, npos, replace=False),
                                  rng.choice(neg, nneg, replace=False)]))
    paths = [split.paths[i] for i in idx]
    images, _, ok = load_images(paths, input_size, cache_dir or default_cache_dir())
    return images[ok]


def clip_calibration(roots: Sequence[str | Path], split: str, input_hw: tuple[int, int], long_side: int,
                     num: int = 200, seed: int = 0) -> np.ndarray:
    """``num`` real frames of the labelled clips of ``split`` in ``roots`` as uint8 ``(num, h, w, 3)``
    at the network's input ``input_hw``: each frame at the run time's scale (long side
    ``long_side``, aspect kept), then a seeded window of ``input_hw`` (the whole frame, resized,
    where it is smaller). The same number from every clip, evenly spaced in time.

    The int8 activation ranges then come from what the run time feeds the model, rather than
    from the composites it was trained on.
    """
    import cv2

    from .clips import load_clips, sample_frames

    clips = [c for root in roots for c in load_clips(root, split)]
    if not clips:
        raise ModelError(f"no {split} clips in {', '.join(map(str, roots))} to calibrate on")
    rng = np.random.default_rng(seed)
    per_clip = -(-num // len(clips))
    h, w = input_hw
    out: list[np.ndarray] = []
    for clip in clips:
        every_s = max(clip.duration, 1.0) / per_clip
        frames = [f for f, _, _ in sample_frames(clip, every_s, margin=0.0, seed=seed)]
        for frame in frames[:per_clip]:
            fh, fw = frame.shape[:2]
            s = long_side / max(fh, fw)
            th, tw = max(h, round(fh * s)), max(w, round(fw * s))
            big = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_LINEAR)
            y, x = int(rng.integers(0, th - h + 1)), int(rng.integers(0, tw - w + 1))
            out.append(big[y:y + h, x:x + w])
    pick = np.sort(rng.choice(len(out), min(num, len(out)), replace=False))
    return np.stack([out[i] for i in pick])


def _representative(images: np.ndarray) -> Any:
    def gen() -> Iterator[list[np.ndarray]]:
        for img in images:
            yield [img[None].astype(np.float32)]

    return gen


def convert(model: Any, quantization: str = "float32", calib: np.ndarray | None = None,
            dual: Any = None) -> bytes:
    """TFLite bytes of the dual-output version of ``model`` (or of ``dual``, already built)."""
    import_keras()
    import tensorflow as tf

    dual = dual if dual is not None else dual_output(model)
    conv = tf.lite.TFLiteConverter.from_keras_model(dual)
    if quantization == "int8":
        if calib is None or not len(calib):
            raise ModelError("int8 export needs calibration images")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
    elif quantization != "float32":
        raise ModelError(f"unknown quantization {quantization!r} (float32 or int8)")
    return conv.convert()


def export(
    model: Any,
    out_dir: str | Path,
    calib: np.ndarray | None = None,
    quantizations: tuple[str, ...] = ("float32", "int8"),
    metrics: dict[str, dict] | None = None,
    cam_threshold: float = PAPER_THRESHOLD,
    stem: str = STEM,
) -> dict[str, Path]:
    """Write ``<out_dir>/<stem>_<q>.tflite`` + sidecar for each quantization; return the paths.

    ``model`` is a Keras classifier (or a path to one); ``metrics`` maps a quantization
    to the numbers stored in its sidecar.
    """
    from ..gapmodel import GapModel

    if isinstance(model, (str, Path)):
        model = load_keras(model)
    info = model_info(model)
    kernel, bias = dense_weights(model)
    stride = info["input_size"] // int(dual_output(model).outputs[1].shape[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for q in quantizations:
        path = out / f"{stem}_{q}.tflite"
        path.write_bytes(convert(model, q, calib))
        meta = ModelMeta(
            labels=list(LABELS), person_index=PERSON_INDEX,
            input_size=(info["input_size"], info["input_size"]),
            dense_kernel=kernel, dense_bias=bias, quantization=q,
            backbone=info.get("backbone", "mobilenet"), alpha=info.get("alpha", 0.5), output_stride=stride,
            cam_threshold=cam_threshold, metrics=dict((metrics or {}).get(q, {})),
        )
        save_meta(meta, path)
        GapModel(path).predict(np.zeros((2, *meta.input_size, 3), np.uint8))  # loads, resizes, runs
        log.info("wrote %s (%.2f MB) and %s", path, path.stat().st_size / 1e6, path.with_suffix(".json"))
        paths[q] = path
    return paths


def export_scene(model: Any, out_dir: str | Path, calib: np.ndarray | None,
                 quantizations: tuple[str, ...] = ("float32", "int8"), cam_threshold: float = PAPER_THRESHOLD,
                 stem: str = STEM) -> dict[str, Path]:
    """Export a scene model (:mod:`.fcn`): keep-aspect input, its stride and pooling in the metadata.

    The CAM kernel stored is the difference of the two class columns in the person column and
    zeros in the other, the bias likewise: softmax depends only on that difference, so the person
    CAM is the per-cell evidence for person over no person, and pooling these per-cell scores
    (zones.masked_probs) gives the model's own probabilities for GAP.
    """
    from ..gapmodel import GapModel
    from .fcn import scene_dual_output, scene_model_info

    info = scene_model_info(model)
    kernel, bias = dense_weights(model)
    cam_kernel = np.zeros_like(kernel)
    cam_kernel[:, PERSON_INDEX] = kernel[:, PERSON_INDEX] - kernel[:, 1 - PERSON_INDEX]
    cam_bias = np.zeros_like(bias)
    cam_bias[PERSON_INDEX] = bias[PERSON_INDEX] - bias[1 - PERSON_INDEX]
    dual = scene_dual_output(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for q in quantizations:
        path = out / f"{stem}_{q}.tflite"
        path.write_bytes(convert(model, q, calib, dual))
        meta = ModelMeta(
            labels=list(LABELS), person_index=PERSON_INDEX, input_size=info["input_hw"],
            dense_kernel=cam_kernel, dense_bias=cam_bias, quantization=q, backbone=info["backbone"],
            alpha=info["alpha"], output_stride=info["stride"], input_mode="keep_aspect",
            pooling=info["pooling"], cam_threshold=cam_threshold, pool_kernel=kernel, pool_bias=bias,
            topk_share=info["k"],
        )
        save_meta(meta, path)
        for hw in (meta.input_size, meta.input_size[::-1]):  # loads, resizes to portrait, runs
            GapModel(path, input_size=hw).predict(np.zeros((2, *hw, 3), np.uint8))
        log.info("wrote %s (%.2f MB) and %s", path, path.stat().st_size / 1e6, path.with_suffix(".json"))
        paths[q] = path
    return paths


def update_metrics(tflite_path: str | Path, metrics: dict, cam_threshold: float,
                   box_scale: tuple[float, float] = (1.0, 1.0)) -> None:
    """Store measured ``metrics`` and the box rule they were measured with (threshold, box
    factors) in the sidecar of ``tflite_path`` (the hash stays valid); the rule becomes the
    run-time default."""
    meta: ModelMeta = load_meta(tflite_path)
    meta.metrics = dict(metrics)
    meta.cam_threshold = float(cam_threshold)
    meta.box_scale = (float(box_scale[0]), float(box_scale[1]))
    save_meta(meta, tflite_path)
