"""Model registry: ``build_model(name, n_classes, feature_dim=0, **hparams)`` returns an uncompiled ``keras.Model``.

Every builder takes ``(n_classes, feature_dim=0, *, keep_prob, batchnorm_conv, batchnorm_fc, **kwargs)`` and
returns a model with input ``image`` (48, 48, 1) float32 grey levels 0..255 and, when ``feature_dim > 0``,
``features`` (feature_dim,) float32 (standardised inside by a ``Normalization`` layer named ``feature_norm``);
output ``(n, n_classes)`` softmax probabilities. Builders are imported lazily, so importing this package does not
import TensorFlow.

``svm`` is listed too (``train.py --model svm``) but is a scikit-learn pipeline on the feature vector, not a Keras
model: ``build_model("svm", ...)`` returns the unfitted estimator from ``models.svm.build_svm``.

    >>> from models import available_models
    >>> available_models()[:2]
    ['A', 'B']
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec
from typing import Any

# name -> (module, builder function). Adding an architecture is one line here.
_KERAS_BUILDERS: dict[str, tuple[str, str]] = {
    "A": ("models.original", "build_model_a"),
    "B": ("models.original", "build_model_b"),
    "fernet": ("models.fernet", "build_fernet"),
}
# Models that are not Keras networks (trained by a separate path in training.trainer).
_SKLEARN_BUILDERS: dict[str, tuple[str, str]] = {
    "svm": ("models.svm", "build_svm"),
}


def _present(module: str) -> bool:
    return find_spec(module) is not None


def keras_models() -> list[str]:
    """Names of the Keras architectures whose module is present."""
    return [name for name, (module, _) in _KERAS_BUILDERS.items() if _present(module)]


def is_keras_model(name: str) -> bool:
    """True for a Keras architecture, False for the scikit-learn baseline(s)."""
    return name in _KERAS_BUILDERS


def available_models() -> list[str]:
    """Every valid ``name`` for build_model / ``train.py --model``."""
    return keras_models() + list(_SKLEARN_BUILDERS)


def build_model(name: str, n_classes: int, feature_dim: int = 0, **hparams: Any):
    """Build model ``name``; a wrong name raises ValueError listing the valid ones.

    hparams: ``keep_prob``, ``batchnorm_conv``, ``batchnorm_fc`` and architecture-specific ones (ignored by
    builders that do not use them).
    """
    table = {**_KERAS_BUILDERS, **_SKLEARN_BUILDERS}
    if name not in available_models():
        raise ValueError(f"unknown model {name!r}; choose from {available_models()}")
    if n_classes < 2:
        raise ValueError(f"n_classes {n_classes} must be >= 2")
    if feature_dim < 0:
        raise ValueError(f"feature_dim {feature_dim} must be >= 0")
    module, function = table[name]
    builder = getattr(importlib.import_module(module), function)
    return builder(n_classes, feature_dim, **hparams)


def hparams_from_config(config) -> dict[str, Any]:
    """The builder keyword arguments a ``parameters.Config`` implies."""
    return {
        "keep_prob": config.hyperparams.keep_prob,
        "batchnorm_conv": config.network.use_batchnorm_after_conv_layers,
        "batchnorm_fc": config.network.use_batchnorm_after_fully_connected_layers,
        "input_size": config.network.input_size,
        "initializer": config.network.initializer,
        "width": config.network.width,
        "last_stage_blocks": config.network.last_stage_blocks,
        "svm_kernel": config.hyperparams.svm_kernel,
        "svm_c": config.hyperparams.svm_c,
        "seed": config.training.seed,
    }
