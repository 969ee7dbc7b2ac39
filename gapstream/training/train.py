"""Train the GAP person classifier on INRIA Person (CPU-friendly).

All images are decoded and resized once into memory (and cached on disk); augmentation
(shift, shear, zoom, horizontal flip) is one batched projective transform per step in
the tf.data pipeline, so a 2-core CPU spends its time in the network, not in I/O.
The best model by validation loss is kept as ``OUT/best.keras``; ``OUT/log.csv`` has one
row per epoch and ``OUT/train.json`` the configuration, data counts and timings.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .build import import_keras
from .inria import default_cache_dir, load_inria, load_split_images

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str
    weights: str | None = None  # local Keras weights file for the backbone, or None / "none"
    alpha: float = 0.5
    backbone: str = "mobilenet"
    input_size: int = 224
    epochs: int = 15
    batch_size: int = 32
    lr: float = 5e-4
    l2: float = 1e-3
    dropout: float = 0.0
    val_fraction: float = 0.3
    seed: int = 0
    out: str = "runs/train"
    augment: bool = True
    shift: float = 0.1  # fraction of the image size
    shear: float = 0.1  # shear factor
    zoom: float = 0.15  # +- fraction
    color: float = 0.0  # brightness / contrast jitter strength (0 = off)
    cache_dir: str | None = None
    verbose: int | None = None  # Keras fit verbosity (None: bar on a terminal, a line per epoch otherwise)


def augment_batch(images: Any, seed: Any, shift: float, shear: float, zoom: float, color: float = 0.0) -> Any:
    """Random shift / shear / zoom / horizontal flip of a float batch ``(N, H, W, 3)`` in one op.

    ``seed`` is a stateless-RNG seed (int64 tensor of shape (2,)). ``color > 0`` adds
    brightness (+- color * 64) and contrast (x [1 - color, 1 + color]) jitter.
    """
    import tensorflow as tf

    n = tf.shape(images)[0]
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    u = tf.random.stateless_uniform((n, 7), seed, -1.0, 1.0)
    z = 1.0 + zoom * u[:, 0]  # input/output scale: < 1 zooms in
    sh = shear * u[:, 1]
    tx, ty = shift * w * u[:, 2], shift * h * u[:, 3]
    flip = tf.where(u[:, 4] < 0, -1.0, 1.0)
    # Output pixel (x, y) samples input C + R (p - C) + t, with R = z * [[f, sh], [0, 1]].
    a0, a1 = z * flip, z * sh
    b0, b1 = tf.zeros_like(z), z
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a2 = cx - a0 * cx - a1 * cy + tx
    b2 = cy - b0 * cx - b1 * cy + ty
    zeros = tf.zeros_like(z)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST",
    )
    if color > 0:
        mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
        contrast = (1.0 + color * u[:, 5])[:, None, None, None]
        bright = (64.0 * color * u[:, 6])[:, None, None, None]
        out = tf.clip_by_value((out - mean) * contrast + mean + bright, 0.0, 255.0)
    return out


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, training: bool,
                 cfg: TrainConfig) -> Any:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(images), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and cfg.augment:
        seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)

        def aug(batch: Any, seed: Any) -> Any:
            x, y = batch
            return augment_batch(tf.cast(x, tf.float32), seed, cfg.shift, cfg.shear, cfg.zoom, cfg.color), y

        ds = tf.data.Dataset.zip((ds, seeds)).map(aug, num_parallel_calls=1)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.prefetch(2)


class _EpochLog:
    """Keras callback that logs one line per epoch with its wall time."""

    def __new__(cls, keras: Any) -> Any:
        class EpochLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = logs or {}
                log.info("epoch %d: %s (%.1fs)", epoch + 1,
                         " ".join(f"{k}={v:.4f}" for k, v in logs.items() if isinstance(v, float)),
                         time.perf_counter() - self.t0)

        return EpochLog()


def train(cfg: TrainConfig) -> dict:
    """Train, keep the best model by validation loss, and return a summary dict."""
    keras = import_keras()
    import tensorflow as tf

    from .build import build_model

    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    data = load_inria(cfg.data, splits=("train",), val_fraction=cfg.val_fraction, seed=cfg.seed)
    cache = cfg.cache_dir or default_cache_dir()
    xtr, ytr, _, _ = load_split_images(data.train, cfg.input_size, cache)
    xva, yva, _, _ = load_split_images(data.val, cfg.input_size, cache)
    counts = {"train": data.train.counts(), "val": data.val.counts(), "raw": data.raw_counts,
              "train_decoded": len(xtr), "val_decoded": len(xva)}
    t_data = time.perf_counter() - t_start
    log.info("data: %d train (%d person), %d val (%d person); loaded in %.1fs", len(xtr), int(ytr.sum()),
             len(xva), int(yva.sum()), t_data)

    model = build_model(cfg.alpha, cfg.backbone, cfg.weights, cfg.input_size, cfg.l2, cfg.dropout)
    steps = max(1, math.ceil(len(xtr) / cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, cfg.epochs * steps),
                                                      alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    log.info("model %s: %d parameters", model.name, model.count_params())

    best = out / "best.keras"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(out / "log.csv")),
        _EpochLog(keras),
    ]
    verbose = cfg.verbose if cfg.verbose is not None else (1 if sys.stderr.isatty() else 0)
    has_val = len(xva) > 0
    if not has_val:
        callbacks[0] = keras.callbacks.ModelCheckpoint(str(best), monitor="loss", save_best_only=True)
    t_fit = time.perf_counter()
    hist = model.fit(
        make_dataset(xtr, ytr, cfg.batch_size, True, cfg),
        validation_data=make_dataset(xva, yva, cfg.batch_size, False, cfg) if has_val else None,
        epochs=cfg.epochs, callbacks=callbacks, verbose=verbose, shuffle=False,
    )
    fit_s = time.perf_counter() - t_fit
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    key = "val_loss" if has_val else "loss"
    best_epoch = int(np.argmin(history[key])) + 1
    summary = {
        "config": asdict(cfg),
        "counts": counts,
        "parameters": int(model.count_params()),
        "best_epoch": best_epoch,
        "best": {k: v[best_epoch - 1] for k, v in history.items()},
        "history": history,
        "data_seconds": round(t_data, 1),
        "fit_seconds": round(fit_s, 1),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "model": str(best),
    }
    (out / "train.json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("best epoch %d: %s; model %s; wall %.0fs", best_epoch,
             " ".join(f"{k}={v:.4f}" for k, v in summary["best"].items()), best, summary["wall_seconds"])
    return summary
