"""FERNet: a compact residual CNN for 48x48 faces (the bundled model's architecture, issue 5).

What the field learned after 2016, in a network small enough for a CPU: batch norm after every convolution,
residual blocks (He et al. 2016), downsampling by strided convolution, global average pooling instead of a large
fully connected layer (most of Model B's 42 M parameters sit in its FC 4096), and dropout only before the classifier.

Layout (``width`` w, default 32; channels double at each stage)::

    48x48x1 -> rescale 1/255 -> conv3x3 w, BN, ReLU
    stage 1 (48 -> 24): residual block w   -> 2w, stride 2
    stage 2 (24 -> 12): residual block 2w  -> 4w, stride 2, + residual block 4w
    stage 3 (12 -> 6):  residual block 4w  -> 8w, stride 2, + residual block 8w
    global average pooling -> dropout (1 - keep_prob) -> [concat feature branch] -> softmax

With ``feature_dim > 0`` the optional landmark/HOG branch (standardised by a ``feature_norm`` Normalization layer,
as in Models A and B) goes through a small MLP and is concatenated before the classifier.
"""

from __future__ import annotations

from typing import Any


def build_fernet(
    n_classes: int,
    feature_dim: int = 0,
    *,
    keep_prob: float = 0.6,
    batchnorm_conv: bool = True,
    batchnorm_fc: bool = False,
    width: int = 32,
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

    def norm(x):
        return layers.BatchNormalization()(x) if batchnorm_conv else x

    def conv_bn_relu(x, filters, stride=1):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=not batchnorm_conv)(x)
        return layers.ReLU()(norm(x))

    def residual_block(x, filters, stride=1):
        shortcut = x
        y = conv_bn_relu(x, filters, stride)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=not batchnorm_conv)(y)
        y = norm(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=not batchnorm_conv)(shortcut)
            shortcut = norm(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    image = keras.Input(shape=(input_size, input_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0)(image)
    x = conv_bn_relu(x, width)
    x = residual_block(x, 2 * width, stride=2)
    x = residual_block(x, 4 * width, stride=2)
    x = residual_block(x, 4 * width)
    x = residual_block(x, 8 * width, stride=2)
    x = residual_block(x, 8 * width)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(1.0 - keep_prob)(x)

    inputs = [image]
    if feature_dim > 0:
        features = keras.Input(shape=(feature_dim,), name="features")
        f = layers.Normalization(name="feature_norm")(features)
        f = layers.Dense(feature_units, activation="relu")(f)
        if batchnorm_fc:
            f = layers.BatchNormalization()(f)
        f = layers.Dropout(1.0 - keep_prob)(f)
        x = layers.Concatenate()([x, f])
        inputs.append(features)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs=inputs if len(inputs) > 1 else image, outputs=outputs, name="fernet")
