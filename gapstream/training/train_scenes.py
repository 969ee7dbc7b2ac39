"""Train the scene model: frozen stem features computed once, then the upper trunk and head.

The stem (MobileNet up to stride 8, ImageNet weights, frozen) is the costliest part of
the network at 256x448; its features are computed once per training image (and its
mirror image) and cached, so each epoch only runs the upper layers. On 2 cores this makes
a ~9,000-image set take minutes per epoch instead of tens of minutes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapstreamError
from .build import import_keras
from .scenes import SceneSet

log = logging.getLogger(__name__)


@dataclass
class SceneTrainConfig:
    weights: str | None  # ImageNet MobileNet v1 no-top .h5 for the chosen alpha
    out: str = "runs/scenes"
    alpha: float = 0.25
    backbone: str = "mobilenet"  # or mobilenetv2
    stride: int = 16
    pooling: str = "gap"
    topk: float = 0.05  # share of the cells the top-k pooling averages
    epochs: int = 8
    batch: int = 32
    lr: float = 1e-3
    l2: float = 1e-4
    flip: bool = False  # also train on mirrored images (their stem features are computed too)
    seed: int = 0
    distill: str | None = None  # a trained scene model whose probabilities are blended into the targets
    distill_weight: float = 0.5  # the teacher's share of each target (Hinton et al.'s soft targets)
    frozen_trunk: bool = False  # train only the dense layer on the ImageNet maps (a linear probe)
    init: str | None = None  # a trained scene model of the same architecture to start from (fine-tuning)


def stem_features(stem: Any, x: np.ndarray, flip: bool = False, batch: int = 32) -> np.ndarray:
    """The frozen stem's output for uint8 images ``x`` (or any frozen sub-model's for its input),
    as float16 to halve the memory."""
    import tensorflow as tf

    out: np.ndarray | None = None
    for i in range(0, len(x), batch):
        b = x[i : i + batch]
        f = stem(tf.cast(b[:, :, ::-1] if flip else b, tf.float32), training=False).numpy()
        if out is None:
            out = np.empty((len(x), *f.shape[1:]), np.float16)
        out[i : i + len(b)] = f
    assert out is not None
    return out


def per_source_accuracy(probs: np.ndarray, data: SceneSet) -> dict[str, dict]:
    out = {}
    for src in sorted(set(data.source.tolist())):
        m = data.source == src
        out[src] = {"n": int(m.sum()), "person": int(data.y[m].sum()),
                    "accuracy": round(float(((probs[m] >= 0.5) == data.y[m]).mean()), 4)}
    return out


def same_stem(other: Any, stem: Any) -> bool:
    """Whether a trained scene model's frozen stem has exactly the weights of ``stem``'s."""
    theirs, ours = other.get_layer("stem").get_weights(), stem.get_layer("stem").get_weights()
    return len(theirs) == len(ours) and all(np.array_equal(a, b) for a, b in zip(theirs, ours))


def start_from(model: Any, stem: Any, path: str) -> None:
    """Set ``model``'s weights to those of the trained scene model at ``path`` (``--init``)."""
    from .export import load_keras

    init = load_keras(path)
    shapes = [w.shape for w in init.get_weights()]
    if not same_stem(init, stem) or shapes != [w.shape for w in model.get_weights()]:
        raise GapstreamError(f"--init {path}: not a model of this architecture (its backbone, alpha, stride "
                             "and ImageNet stem must match)")
    model.set_weights(init.get_weights())


def teacher_probs(path: str, stem: Any, feats: np.ndarray, batch: int = 64) -> np.ndarray:
    """A trained scene model's probabilities ``(N, 2)`` from the cached stem features ``feats``.

    Its own frozen stem must be the student's (the same ImageNet layers), else the features differ."""
    from .export import load_keras
    from .fcn import scene_head

    teacher = load_keras(path)
    if not same_stem(teacher, stem):
        raise GapstreamError(f"--distill {path}: its frozen stem differs from this model's, so it cannot "
                             "teach from these features")
    head = scene_head(teacher)
    # In slices: the float16 features of a whole training set would double in size as float32.
    return np.concatenate([head.predict(feats[i : i + batch].astype(np.float32), verbose=0)
                           for i in range(0, len(feats), batch)]).astype(np.float32)


def frozen_maps(trunk: Any, feats: np.ndarray, batch: int = 64) -> np.ndarray:
    """A frozen trunk's maps for cached stem features (float16, filled in place as the stem's are)."""
    return stem_features(trunk, feats, batch=batch)


def probe_head(model: Any) -> Any:
    """``maps -> probs`` with the scene model's own dense, pooling and softmax layers (shared, so
    training it trains the model)."""
    keras = import_keras()
    from .build import DENSE_NAME
    from .fcn import POOL_NAME

    maps = keras.Input(model.get_layer("trunk").outputs[0].shape[1:], name="maps")
    x = model.get_layer("probs")(model.get_layer(POOL_NAME)(model.get_layer(DENSE_NAME)(maps)))
    return keras.Model(maps, x, name="probe")


def train_scenes(cfg: SceneTrainConfig, train: SceneSet, val: SceneSet) -> dict:
    """Train, save ``OUT/model.keras`` and ``OUT/train.json``; return the summary."""
    keras = import_keras()
    import tensorflow as tf

    from .fcn import build_scene_model

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model, stem, head = build_scene_model(cfg.weights, train.x.shape[1:3], cfg.alpha, cfg.stride, cfg.pooling,
                                          cfg.topk, cfg.l2, cfg.backbone)
    if cfg.init:
        start_from(model, stem, cfg.init)
        log.info("starting from %s", cfg.init)
    feats, labels = stem_features(stem, train.x), train.y
    if cfg.flip:
        feats = np.concatenate([feats, stem_features(stem, train.x, flip=True)])
        labels = np.concatenate([labels, labels])
    val_feats = stem_features(stem, val.x)
    t_feat = time.perf_counter() - t0
    log.info("stem features of %d images in %.0f s", len(feats), t_feat)
    # Balanced classes: each class weighs half of the loss.
    weight = np.where(labels == 1, len(labels) / (2 * max(1, labels.sum())),
                      len(labels) / (2 * max(1, (1 - labels).sum()))).astype(np.float32)
    targets = np.eye(2, dtype=np.float32)[labels]
    if cfg.distill:
        teacher = teacher_probs(cfg.distill, stem, feats)
        targets = (1 - cfg.distill_weight) * targets + cfg.distill_weight * teacher
        log.info("distilling %s: its mean person probability %.3f on person images, %.3f on the others",
                 cfg.distill, teacher[labels == 1, 1].mean(), teacher[labels == 0, 1].mean())
    fit_model = head
    if cfg.frozen_trunk:
        # The maps of a frozen trunk are fixed too: computed once, only the dense layer trains.
        trunk = model.get_layer("trunk")
        trunk.trainable = False
        feats, val_feats = frozen_maps(trunk, feats), frozen_maps(trunk, val_feats)
        fit_model = probe_head(model)
        log.info("frozen trunk: maps %s in %.0f s", feats.shape[1:], time.perf_counter() - t0 - t_feat)
    ds = (tf.data.Dataset.from_tensor_slices((feats, targets, weight)).shuffle(len(feats), seed=cfg.seed)
          .batch(cfg.batch).map(lambda f, y, w: (tf.cast(f, tf.float32), y, w)).prefetch(2))
    dv = tf.data.Dataset.from_tensor_slices((val_feats, np.eye(2, dtype=np.float32)[val.y])).batch(64).map(
        lambda f, y: (tf.cast(f, tf.float32), y))
    steps = -(-len(feats) // cfg.batch) * cfg.epochs
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, steps, alpha=0.02)
    fit_model.compile(optimizer=keras.optimizers.Adam(schedule),
                      loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    hist = fit_model.fit(ds, validation_data=dv if len(val.y) else None, epochs=cfg.epochs, verbose=2)
    model.save(out / "model.keras")
    probs = fit_model.predict(dv, verbose=0)[:, 1] if len(val.y) else np.zeros(0)
    summary = {
        "config": asdict(cfg), "model": str(out / "model.keras"), "parameters": int(model.count_params()),
        "train_counts": train.counts(), "val_counts": val.counts(),
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
        "val_accuracy": float(((probs >= 0.5) == val.y).mean()) if len(val.y) else None,
        "val_by_source": per_source_accuracy(probs, val) if len(val.y) else {},
        "feature_seconds": round(t_feat, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
        "tensorflow": tf.__version__,
    }
    (out / "train.json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("val accuracy %s; model %s; %.0f s", summary["val_accuracy"], summary["model"],
             summary["wall_seconds"])
    return summary
