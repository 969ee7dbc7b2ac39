"""The fully convolutional scene model: MobileNet trunk -> per-cell class scores -> spatial pooling.

The dense layer of the GAP classifier is applied to every cell of the conv maps, which
gives the class score maps (the CAMs, before normalisation), and a spatial pooling turns
them into the two logits:

* ``gap``: the mean over cells, i.e. exactly GAP followed by the dense layer (Zhou et al.);
* ``topk``: the mean of the ``k`` highest cells (a share of the map), so one small person
  can carry the decision, which a mean over a whole 28x16 map dilutes.

``stride`` 16 stops the trunk at stride 16 (the CAM paper removed the last layers for 14x14
maps; here 16x28 at 256x448): after ``conv_pw_11`` of MobileNet v1, or at block 13's
expansion of MobileNetV2. The backbone up to stride 8 is frozen: its ImageNet features are
computed once per training image (see :mod:`.train_scenes`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .build import DENSE_NAME, LABELS, import_keras, load_backbone_weights

#: Per backbone: the last frozen layer (stride 8) and the last layer for each output stride.
#: MobileNetV2's stride-16 map is block 13's expansion (as in SSDLite): 6x the channels of block 12.
BACKBONES = {
    "mobilenet": ("conv_pw_5_relu", {16: "conv_pw_11_relu", 32: "conv_pw_13_relu"}),
    "mobilenetv2": ("block_5_add", {16: "block_13_expand_relu", 32: "out_relu"}),
}
POOLINGS = ("gap", "topk")
POOL_NAME = "pool"


@functools.cache
def spatial_pool_layer() -> Any:
    """The Keras layer class (defined lazily, once: Keras is imported only for training)."""
    keras = import_keras()
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="gapstream")
    class SpatialPool(keras.layers.Layer):
        """Class score maps ``(N, h, w, K)`` -> logits ``(N, K)`` by mean or top-k mean."""

        def __init__(self, mode: str = "gap", k: float = 0.05, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.mode, self.k = mode, k

        def call(self, s: Any) -> Any:
            if self.mode == "gap":
                return tf.reduce_mean(s, axis=[1, 2])
            flat = tf.reshape(tf.transpose(s, [0, 3, 1, 2]), [tf.shape(s)[0], s.shape[3], -1])
            # k follows the map's size at run time (a keep-aspect input changes the cell count),
            # so the exported graph pools the same share of cells at every input size.
            cells = tf.cast(tf.shape(flat)[2], tf.float32)
            k = tf.maximum(1, tf.cast(tf.round(self.k * cells), tf.int32))
            return tf.reduce_mean(tf.math.top_k(flat, k=k).values, axis=-1)

        def get_config(self) -> dict:
            return {**super().get_config(), "mode": self.mode, "k": self.k}

    return SpatialPool


def build_scene_model(weights: str | Path | None, input_hw: tuple[int, int] = (256, 448), alpha: float = 0.25,
                      stride: int = 16, pooling: str = "gap", k: float = 0.05, l2: float = 1e-4,
                      backbone: str = "mobilenet") -> tuple[Any, Any, Any]:
    """``(model, stem, head)``: the classifier ``RGB [0, 255] -> probs``; its frozen stem
    ``RGB -> stride-8 features``; and ``features -> probs``, sharing the trainable layers.

    The model is a chain (rescale, stem, trunk, dense, pool, softmax) of which stem and trunk
    are sub-models cut from the ImageNet backbone.
    """
    keras = import_keras()
    if backbone not in BACKBONES or stride not in BACKBONES[backbone][1] or pooling not in POOLINGS:
        raise ValueError(f"backbone one of {sorted(BACKBONES)}, stride 16 or 32, pooling one of {POOLINGS}")
    frozen, last = BACKBONES[backbone][0], BACKBONES[backbone][1][stride]
    h, w = input_hw
    import warnings

    app = keras.applications.MobileNet if backbone == "mobilenet" else keras.applications.MobileNetV2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-square input: "weights for 224x224 will be loaded"
        base = app(input_shape=(h, w, 3), alpha=alpha, include_top=False, weights=None)
    if weights is not None and str(weights).lower() != "none":
        # By topology: MobileNetV2 files from Keras 2.1 carry other layer names.
        load_backbone_weights(base, weights)
    stem = keras.Model(base.inputs[0], base.get_layer(frozen).output, name="stem")
    stem.trainable = False
    trunk = keras.Model(base.get_layer(frozen).output, base.get_layer(last).output, name="trunk")
    dense = keras.layers.Dense(len(LABELS), name=DENSE_NAME, kernel_regularizer=keras.regularizers.l2(l2))
    pool = spatial_pool_layer()(pooling, k, name=POOL_NAME)
    softmax = keras.layers.Softmax(name="probs")
    inp = keras.Input((h, w, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
    name = f"gapfcn_{backbone}_{alpha:g}_{h}x{w}_s{stride}_{pooling}"
    model = keras.Model(inp, softmax(pool(dense(trunk(stem(x))))), name=name)
    feats = keras.Input(stem.outputs[0].shape[1:], name="features")
    head = keras.Model(feats, softmax(pool(dense(trunk(feats)))), name="head")
    stem_model = keras.Model(inp, stem(x), name="stem_rgb")
    return model, stem_model, head


def scene_head(model: Any) -> Any:
    """``stride-8 features -> probs`` of a trained scene model (the layers after its frozen stem)."""
    keras = import_keras()
    stem = model.get_layer("stem")
    x = feats = keras.Input(stem.outputs[0].shape[1:], name="features")
    after = False
    for layer in model.layers[1:]:  # a chain: rescale, stem, trunk, dense, pool, softmax
        if after:
            x = layer(x)
        after = after or layer.name == "stem"
    return keras.Model(feats, x, name="head")


def scene_dual_output(model: Any) -> Any:
    """``image -> [probs (N, 2), maps (N, h, w, C)]`` for export: the maps feed the dense layer."""
    keras = import_keras()
    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    x, maps = inp, None
    for layer in model.layers[1:]:  # a chain: rescale, trunk layers, dense, pool, softmax
        if layer.name == DENSE_NAME:
            maps = x
        x = layer(x)
    return keras.Model(inp, [x, maps], name=model.name + "_dual")


def scene_model_info(model: Any) -> dict:
    """Alpha, input (h, w), stride and pooling recorded in the name by :func:`build_scene_model`."""
    _, backbone, alpha, hw, stride, pooling = model.name.split("_")
    h, w = (int(v) for v in hw.split("x"))
    pool = model.get_layer(POOL_NAME)
    return {"backbone": backbone, "alpha": float(alpha), "input_hw": (h, w), "stride": int(stride[1:]),
            "pooling": pooling, "k": float(pool.k)}
