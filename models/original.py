"""The 2016 repository's two CNNs (tflearn) rebuilt in Keras 3, layer for layer.

tflearn semantics kept: convolution and max-pool padding ``same``, ReLU, max-pool 3x3 stride 2, dropout rate
``1 - keep_prob``, optional BatchNormalization after each convolution (default on; tflearn's decay 0.9 and
epsilon 1e-5) and after the fully connected layers (default off; where the 2016 code put it: after the image
branch's FC 1024 and both feature-branch FC layers, not after Model B's FC 4096 nor the image FC before the
merge), softmax output.

Model A (19,118,407 trainable parameters for 7 classes, raw)::

    conv 64 5x5 -> BN -> maxpool -> conv 64 5x5 -> BN -> maxpool -> conv 128 4x4 -> BN -> dropout -> FC 1024

Model B (42,325,895 trainable parameters for 7 classes, raw)::

    conv 64 3x3 -> BN -> maxpool -> conv 128 3x3 -> BN -> maxpool -> conv 256 3x3 -> BN -> maxpool
    -> dropout -> FC 4096 -> dropout -> FC 1024

With a feature vector (``feature_dim > 0``) both gain a second input, standardised by a ``Normalization`` layer
named ``feature_norm`` (statistics set by training from the Training split), then FC 1024 -> FC ``merge_units``
(A: 40, B: 128); the image branch gets its own FC ``merge_units``; the two are concatenated before the softmax.
"""

from __future__ import annotations

from typing import Any

# tflearn.batch_normalization defaults (Keras would use momentum 0.99, epsilon 1e-3).
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _kernel_init(kind: str, initializer: str):
    """Kernel initialiser for a "conv" or "dense" layer: Keras' default (Glorot uniform) or tflearn's defaults
    (conv_2d ``uniform_scaling``: uniform +-sqrt(3 / fan_in); fully_connected ``truncated_normal``: stddev 0.02)."""
    from keras import initializers

    from parameters import INITIALIZERS

    if initializer not in INITIALIZERS:
        raise ValueError(f"unknown initializer {initializer!r}; choose from {list(INITIALIZERS)}")
    if initializer == "keras":
        return "glorot_uniform"
    if kind == "conv":
        return initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")
    return initializers.TruncatedNormal(mean=0.0, stddev=0.02)


def _bn(x):
    from keras import layers

    return layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON)(x)


def _image_input(input_size: int):
    import keras
    from keras import layers

    image = keras.Input(shape=(input_size, input_size, 1), name="image")
    return image, layers.Rescaling(1.0 / 255.0, name="rescale")(image)


def _dense(x, units: int, batchnorm_fc: bool, initializer: str):
    from keras import layers

    x = layers.Dense(units, activation="relu", kernel_initializer=_kernel_init("dense", initializer))(x)
    return _bn(x) if batchnorm_fc else x


def _finish(name, image, x, n_classes, feature_dim, merge_units, batchnorm_fc, initializer):
    """Add the optional feature branch and the softmax; return the Model."""
    import keras
    from keras import layers

    inputs = [image]
    if feature_dim > 0:
        features = keras.Input(shape=(feature_dim,), name="features")
        f = layers.Normalization(name="feature_norm")(features)
        f = _dense(f, 1024, batchnorm_fc, initializer)
        f = _dense(f, merge_units, batchnorm_fc, initializer)
        x = _dense(x, merge_units, False, initializer)  # the 2016 code has no batch norm here
        x = layers.Concatenate(axis=1)([x, f])
        inputs.append(features)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities",
                           kernel_initializer=_kernel_init("dense", initializer))(x)
    return keras.Model(inputs=inputs if len(inputs) > 1 else image, outputs=outputs, name=name)


def build_model_a(
    n_classes: int,
    feature_dim: int = 0,
    *,
    keep_prob: float = 0.956,
    batchnorm_conv: bool = True,
    batchnorm_fc: bool = False,
    input_size: int = 48,
    initializer: str = "keras",
    **_: Any,
):
    """Model A: inputs ``image`` (input_size, input_size, 1) grey levels 0..255 [and ``features``
    (feature_dim,) float32]; output ``(n, n_classes)`` softmax probabilities. Uncompiled."""
    from keras import layers

    image, x = _image_input(input_size)
    for filters, kernel, pool in ((64, 5, True), (64, 5, True), (128, 4, False)):
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu",
                          kernel_initializer=_kernel_init("conv", initializer))(x)
        if batchnorm_conv:
            x = _bn(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Dropout(1.0 - keep_prob)(x)
    x = layers.Flatten()(x)
    x = _dense(x, 1024, batchnorm_fc, initializer)
    return _finish("model_a", image, x, n_classes, feature_dim, 40, batchnorm_fc, initializer)


def build_model_b(
    n_classes: int,
    feature_dim: int = 0,
    *,
    keep_prob: float = 0.956,
    batchnorm_conv: bool = True,
    batchnorm_fc: bool = False,
    input_size: int = 48,
    initializer: str = "keras",
    **_: Any,
):
    """Model B: inputs ``image`` (input_size, input_size, 1) grey levels 0..255 [and ``features``
    (feature_dim,) float32]; output ``(n, n_classes)`` softmax probabilities. Uncompiled."""
    from keras import layers

    image, x = _image_input(input_size)
    for filters in (64, 128, 256):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          kernel_initializer=_kernel_init("conv", initializer))(x)
        if batchnorm_conv:
            x = _bn(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Dropout(1.0 - keep_prob)(x)
    x = layers.Flatten()(x)
    x = _dense(x, 4096, False, initializer)  # the 2016 code has no batch norm after FC 4096
    x = layers.Dropout(1.0 - keep_prob)(x)
    x = _dense(x, 1024, batchnorm_fc, initializer)
    return _finish("model_b", image, x, n_classes, feature_dim, 128, batchnorm_fc, initializer)
