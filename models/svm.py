"""Support-vector-machine baseline on the landmark feature vectors (``train.py --model svm``).

A scikit-learn pipeline: ``StandardScaler`` (statistics from Training only, stored in the pipeline) then ``SVC``.
It uses the feature vector alone (landmarks, optionally with HOG), not the pixels, as the SVM baselines of the
2016 era did. Saved with skops (no pickle) next to the same metadata as the Keras models (see models.io).

``SvmModel`` wraps the fitted pipeline so evaluation and prediction can call ``model.predict([images, features])``
as they would a Keras model; its "probabilities" are the softmax of the one-vs-rest decision values (SVC's Platt
scaling would cost five extra fits), monotone in the SVM's scores, so the argmax is the SVM's prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parameters import SVM_KERNELS  # defined once, with the other choice lists


def build_svm(
    n_classes: int,
    feature_dim: int = 0,
    *,
    svm_kernel: str = "rbf",
    svm_c: float = 1.0,
    seed: int = 0,
    **_: Any,
):
    """Unfitted ``sklearn.pipeline.Pipeline`` (StandardScaler -> SVC). Needs a feature vector (feature_dim > 0)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if feature_dim <= 0:
        raise ValueError("the svm model needs a feature vector: choose a landmarks* feature set, not 'raw'")
    if svm_kernel not in SVM_KERNELS:
        raise ValueError(f"svm_kernel {svm_kernel!r}: choose from {list(SVM_KERNELS)}")
    if not svm_c > 0:
        raise ValueError(f"svm_c {svm_c} must be > 0")
    return make_pipeline(
        StandardScaler(),
        SVC(kernel=svm_kernel, C=svm_c, gamma="scale", decision_function_shape="ovr", random_state=seed),
    )


class SvmModel:
    """A fitted SVM pipeline with the Keras-like calls the rest of the toolkit uses."""

    def __init__(self, pipeline, n_classes: int):
        self.pipeline = pipeline
        self.n_classes = n_classes

    def predict(self, inputs, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """``inputs``: ``[images, features]`` or ``features`` (n, d) float32 -> ``(n, n_classes)`` float32 scores
        that sum to 1 (softmax of the decision values)."""
        features = inputs[1] if isinstance(inputs, list | tuple) else inputs
        scores = np.asarray(self.pipeline.decision_function(np.asarray(features, dtype=np.float32)), np.float64)
        if scores.ndim == 1:  # binary SVC returns one column: score of class 1
            scores = np.stack([-scores, scores], axis=1)
        # Classes absent from Training have no column: give them a score far below the others.
        full = np.full((len(scores), self.n_classes), scores.min() - 50.0)
        full[:, np.asarray(self.pipeline.classes_, dtype=np.int64)] = scores
        scores = full - full.max(axis=1, keepdims=True)
        probabilities = np.exp(scores)
        return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)

    __call__ = predict
