"""The GAP person classifier: MobileNet v1 backbone + GlobalAveragePooling2D + Dense(2, softmax).

The model's input is raw RGB in ``[0, 255]``; MobileNet's ``x / 127.5 - 1`` is a
``Rescaling`` layer inside the graph, so the runtime only resizes frames and feeds
uint8 pixels. :func:`dual_output` turns a trained classifier into the exported form
with two outputs: probabilities ``(N, 2)`` and the last conv activation maps
``(N, h, w, C)`` that feed the GAP layer (after the last ReLU).

TensorFlow / Keras are imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..errors import DataError, GapstreamError

LABELS = ["no_person", "person"]
PERSON_INDEX = 1
BACKBONES = ("mobilenet", "tiny")
BACKBONE_NAME = "backbone"
DENSE_NAME = "predictions"


def import_keras() -> Any:
    """Import Keras (with TensorFlow) or raise the user-facing 'install the train extra' error."""
    try:
        import keras
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise GapstreamError("training needs the train extra: pip install 'gapstream[train]'") from exc
    return keras


def _tiny_backbone(keras: Any, input_size: int, alpha: float) -> Any:
    """A very small conv net for tests: 5 stride-2 conv+BN+ReLU blocks (output stride 32)."""
    inp = keras.Input((input_size, input_size, 3))
    x = inp
    for i, c in enumerate((8, 16, 32, 64, 128)):
        x = keras.layers.Conv2D(max(4, int(c * alpha)), 3, strides=2, padding="same", use_bias=False,
                                name=f"tiny_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"tiny_bn{i}")(x)
        x = keras.layers.ReLU(name=f"tiny_relu{i}")(x)
    return keras.Model(inp, x, name=BACKBONE_NAME)


def build_backbone(alpha: float = 0.5, backbone: str = "mobilenet", input_size: int = 224) -> Any:
    """The convolutional trunk (no top, no pooling): maps ``[-1, 1]`` images to the last ReLU maps."""
    keras = import_keras()
    if backbone == "mobilenet":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input shape not in [128, 160, 192, 224]" for tiny tests
            net = keras.applications.MobileNet(
                input_shape=(input_size, input_size, 3), alpha=alpha, include_top=False,
                weights=None, pooling=None,
            )
        # Re-wrap to give the nested model a stable name; layer names stay MobileNet's.
        return keras.Model(net.inputs[0], net.outputs[0], name=BACKBONE_NAME)
    if backbone == "tiny":
        return _tiny_backbone(keras, input_size, alpha)
    raise GapstreamError(f"unknown backbone {backbone!r} (choose from {', '.join(BACKBONES)})")


def load_backbone_weights(net: Any, weights: str | Path) -> None:
    """Load a local Keras weights file (e.g. ``mobilenet_5_0_224_tf_no_top.h5``) into the backbone.

    Topology first (the Keras applications file matches layer for layer); if that fails,
    by layer name (``.h5`` only), which tolerates extra or missing layers.
    """
    path = Path(weights)
    if not path.is_file():
        raise DataError(f"weights file {path} not found (pass --weights none to train from scratch)")
    try:
        net.load_weights(str(path))
        return
    except Exception as first:  # noqa: BLE001 - any mismatch: fall back to name matching
        if path.suffix not in (".h5", ".hdf5"):
            raise GapstreamError(f"cannot load weights {path} into the backbone: {first}") from first
        try:
            net.load_weights(str(path), skip_mismatch=False, by_name=True)
        except Exception as exc:  # noqa: BLE001
            raise GapstreamError(f"cannot load weights {path} into the backbone: {exc}") from exc


def build_model(
    alpha: float = 0.5,
    backbone: str = "mobilenet",
    weights: str | Path | None = None,
    input_size: int = 224,
    l2: float = 1e-3,
    dropout: float = 0.0,
) -> Any:
    """The trainable classifier ``raw RGB [0, 255] -> probs (N, 2)`` (label order :data:`LABELS`).

    ``weights`` is a local Keras weights file for the backbone, or ``None`` / ``"none"``
    to start from random initialisation. Keras is never asked to download anything.
    """
    keras = import_keras()
    net = build_backbone(alpha, backbone, input_size)
    if weights is not None and str(weights).lower() != "none":
        load_backbone_weights(net, weights)
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inp)
    maps = net(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(maps)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    probs = keras.layers.Dense(
        len(LABELS), activation="softmax", name=DENSE_NAME,
        kernel_regularizer=keras.regularizers.l2(l2) if l2 > 0 else None,
    )(x)
    return keras.Model(inp, probs, name=f"gap_{backbone}_{alpha:g}_{input_size}")


def dual_output(model: Any) -> Any:
    """``image -> [probs (N, 2), maps (N, h, w, C)]`` sharing the weights of ``model``.

    ``maps`` is the backbone output, i.e. the last ReLU activation that feeds the GAP layer.
    """
    keras = import_keras()
    net = model.get_layer(BACKBONE_NAME)
    dense = model.get_layer(DENSE_NAME)
    inp = keras.Input(model.input_shape[1:], name="image")
    x = model.get_layer("rescale")(inp)
    maps = net(x)
    probs = dense(model.get_layer("gap")(maps))
    return keras.Model(inp, [probs, maps], name=model.name + "_dual")


def dense_weights(model: Any) -> tuple[Any, Any]:
    """The dense layer's ``(kernel (C, 2), bias (2,))`` as float32 numpy arrays."""
    import numpy as np

    kernel, bias = model.get_layer(DENSE_NAME).get_weights()
    return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)


def model_info(model: Any) -> dict:
    """Backbone, alpha and input size recorded in the model's name by :func:`build_model`."""
    parts = model.name.split("_")
    info = {"input_size": int(model.input_shape[1])}
    if len(parts) >= 4 and parts[0] == "gap":
        info["backbone"] = parts[1]
        with contextlib.suppress(ValueError):
            info["alpha"] = float(parts[2])
    return info
