"""FERNet: a compact residual CNN for 48x48 faces (the bundled model's architecture, issue 5).

What the field learned after 2016, in a network small enough for a CPU: batch norm after every convolution,
residual blocks (He et al. 2016), downsampling by strided convolution, global average pooling instead of a large
fully connected layer (most of Model B's 42 M parameters sit in its FC 4096), and dropout only before the classifier.

Layout (``width`` w, default 32; channels double at each stage)::

    48x48x1 -> rescale 1/255 -> conv3x3 w, BN, ReLU
    stage 1 (48 -> 24): residual block w   -> 2w, stride 2
    stage 2 (24 -> 12): residual block 2w  -> 4w, stride 2, + residual block 4w
    stage 3 (12 -> 6):  residual block 4w  -> 8w, stride 2, + (last_stage_blocks - 1) residual blocks 8w
    global average pooling -> dropout (1 - keep_prob) -> [concat feature branch] -> softmax

Widths up to 8 build each stride-2 shortcut as "keep every 2nd pixel, then a 1x1 convolution", the same function
as the strided 1x1 convolution that TF 2.21's oneDNN kernels crash on (SIGSEGV) over 8 or fewer channels.

Layers are named by place (``stem_conv``, ``s3b2_conv1``, ``s3b2_bn2``, ``probabilities`` ...), so
:func:`grow_fernet` can copy a model into a deeper one: a last-stage block more costs little (6x6 maps) and starts
as the identity (its last batch norm scaled to 0), so the grown model predicts exactly what the smaller one did.

With ``feature_dim > 0`` the optional landmark/HOG branch (standardised by a ``feature_norm`` Normalization layer,
as in Models A and B) goes through a small MLP and is concatenated before the classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Widths up to this (stem channels) build their stride-2 shortcuts as subsample + 1x1 convolution, see build_fernet.
NARROW_STRIDED_PROJECTION = 8


def build_fernet(
    n_classes: int,
    feature_dim: int = 0,
    *,
    keep_prob: float = 0.6,
    batchnorm_conv: bool = True,
    batchnorm_fc: bool = False,
    width: int = 32,
    last_stage_blocks: int = 2,
    feature_units: int = 128,
    input_size: int = 48,
    **_: Any,
):
    """Return an uncompiled ``keras.Model``: inputs ``image`` (48, 48, 1) grey levels 0..255 [and ``features``
    (feature_dim,) float32]; output ``(n, n_classes)`` softmax probabilities."""
    import keras
    from keras import layers

    if width < 4:
        raise ValueError(f"fernet width {width} must be >= 4")
    if last_stage_blocks < 1:
        raise ValueError(f"fernet last_stage_blocks {last_stage_blocks} must be >= 1")

    def norm(x, name):
        return layers.BatchNormalization(name=name)(x) if batchnorm_conv else x

    def conv_bn_relu(x, filters, name, index="", stride=1):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=not batchnorm_conv,
                          name=f"{name}_conv{index}")(x)
        return layers.ReLU(name=f"{name}_relu{index}")(norm(x, f"{name}_bn{index}"))

    def residual_block(x, filters, name, stride=1):
        shortcut = x
        y = conv_bn_relu(x, filters, name, 1, stride)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=not batchnorm_conv, name=f"{name}_conv2")(y)
        y = norm(y, f"{name}_bn2")
        if stride != 1 or shortcut.shape[-1] != filters:
            proj_stride = stride
            if stride != 1 and shortcut.shape[-1] <= NARROW_STRIDED_PROJECTION:
                # the same function, as TF 2.21's oneDNN kernels crash the process (SIGSEGV) training a strided
                # 1x1 convolution over 8 or fewer channels: keep every stride-th pixel, then a 1x1 convolution
                shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{name}_proj_subsample")(shortcut)
                proj_stride = 1
            shortcut = layers.Conv2D(filters, 1, strides=proj_stride, use_bias=not batchnorm_conv,
                                     name=f"{name}_proj")(shortcut)
            shortcut = norm(shortcut, f"{name}_proj_bn")
        return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))

    image = keras.Input(shape=(input_size, input_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    x = conv_bn_relu(x, width, "stem")
    x = residual_block(x, 2 * width, "s1b1", stride=2)
    x = residual_block(x, 4 * width, "s2b1", stride=2)
    x = residual_block(x, 4 * width, "s2b2")
    x = residual_block(x, 8 * width, "s3b1", stride=2)
    for block in range(2, last_stage_blocks + 1):
        x = residual_block(x, 8 * width, f"s3b{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(1.0 - keep_prob, name="dropout")(x)

    inputs = [image]
    if feature_dim > 0:
        features = keras.Input(shape=(feature_dim,), name="features")
        f = layers.Normalization(name="feature_norm")(features)
        f = layers.Dense(feature_units, activation="relu", name="feature_dense")(f)
        if batchnorm_fc:
            f = layers.BatchNormalization(name="feature_bn")(f)
        f = layers.Dropout(1.0 - keep_prob, name="feature_dropout")(f)
        x = layers.Concatenate(name="concat")([x, f])
        inputs.append(features)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs=inputs if len(inputs) > 1 else image, outputs=outputs, name="fernet")


def grow_fernet(model, source_weights: list, source_blocks: int, n_classes: int, feature_dim: int = 0,
                **hparams: Any) -> None:
    """Load a fernet with ``source_blocks`` last-stage blocks (its ``get_weights()``, ``source_weights``) into
    ``model``, the same fernet (``hparams``: width, batch-norm options ... as :func:`build_fernet`) with more.

    The shared layers get the source's weights; each new block keeps its fresh initialisation except its last batch
    norm (its last convolution without batch norm), set to 0: the block then adds nothing to its input, which is
    non-negative after the ReLU before it, so the grown model computes exactly what the source did. ValueError
    when ``source_weights`` do not fit that smaller fernet.
    """
    hparams = {k: v for k, v in hparams.items() if k != "last_stage_blocks"}
    blocks = sum(1 for layer in model.layers if layer.name.startswith("s3b") and layer.name.endswith("_add"))
    if not 1 <= source_blocks < blocks:
        raise ValueError(f"cannot grow a fernet of {source_blocks} last-stage blocks into one of {blocks}")
    reference = build_fernet(n_classes, feature_dim, last_stage_blocks=source_blocks, **hparams)
    if [w.shape for w in source_weights] != [tuple(w.shape) for w in reference.weights]:
        raise ValueError(f"its weights do not fit a fernet of {source_blocks} last-stage blocks with these options")
    reference.set_weights(source_weights)
    shared = {layer.name: layer for layer in reference.layers}
    last = "_bn2" if hparams.get("batchnorm_conv", True) else "_conv2"
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name in shared:
            layer.set_weights(shared[layer.name].get_weights())
        elif layer.name.endswith(last):  # a new block's last BN (gamma, beta) or convolution (kernel, bias) -> 0
            layer.set_weights([np.zeros_like(w) if i < 2 else w for i, w in enumerate(layer.get_weights())])
