"""Confidence you can trust: temperature scaling (Guo et al. 2017) and the expected calibration error.

A network trained with cross-entropy is usually over- or under-confident: among faces predicted with confidence 0.9,
far fewer or more than 90 % are right. Temperature scaling divides the logits by one scalar ``T`` fitted on held-out
data (PublicTest here; never PrivateTest) to minimise the negative log-likelihood. It does not change any argmax, so
accuracy is untouched. Our models end in a softmax; ``softmax(log p / T)`` equals ``softmax(logits / T)`` because
``log p`` and the logits differ by a per-face constant, so the probabilities are all that is needed.

The fitted value is stored in the model's metadata as ``calibration`` (see :func:`calibration_metadata`);
``inference.classifiers.FerModelClassifier`` applies it to every prediction.

    >>> t = fit_temperature(probabilities, labels)                    # doctest: +SKIP
    >>> expected_calibration_error(apply_temperature(probabilities, t), labels)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNCERTAIN = "uncertain"  # the label predict.py --min-confidence gives a face below the threshold
_EPS = 1e-12


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``(n, k)`` probabilities rescaled as ``softmax(log p / temperature)``, float32 rows summing to 1."""
    if not temperature > 0:
        raise ValueError(f"temperature {temperature} must be > 0")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p[label]`` of ``(n, k)`` probabilities and ``(n,)`` int labels."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    picked = probabilities[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def fit_temperature(
    probabilities: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature in ``bounds`` minimising the NLL of ``(n, k)`` probabilities against ``(n,)`` labels.

    The NLL is convex in ``1 / T``, so a golden-section search on ``log T`` finds the minimum (to ~1e-5 relative).
    """
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one labelled face")
    log_probs = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0))
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        z = log_probs / np.exp(log_t)
        top = z.max(axis=1)
        return float((np.log(np.exp(z - top[:, None]).sum(axis=1)) + top - z[rows, labels]).mean())

    low, high = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    while high - low > 1e-5:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(np.exp((low + high) / 2.0))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the mean over ``n_bins`` equal-width confidence bins of ``|accuracy - mean confidence|``, weighted by the
    share of faces in each bin (Naeini et al. 2015; Guo et al. 2017's 15 bins). 0 is perfectly calibrated."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    correct = predicted == np.asarray(labels)
    # bin i holds confidences in (i / n_bins, (i + 1) / n_bins]
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        members = bins == b
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def calibration_metadata(probabilities: np.ndarray, labels: np.ndarray, split: str = "PublicTest") -> dict[str, Any]:
    """Fit the temperature on ``split``'s probabilities and labels; the ``calibration`` entry of a model's metadata:
    ``{"temperature", "fitted_on", "n", "nll_before", "nll_after", "ece_before", "ece_after"}``."""
    temperature = fit_temperature(probabilities, labels)
    scaled = apply_temperature(probabilities, temperature)
    return {
        "temperature": round(temperature, 5),
        "fitted_on": split,
        "n": int(len(labels)),
        "nll_before": round(negative_log_likelihood(probabilities, labels), 5),
        "nll_after": round(negative_log_likelihood(scaled, labels), 5),
        "ece_before": round(expected_calibration_error(probabilities, labels), 5),
        "ece_after": round(expected_calibration_error(scaled, labels), 5),
    }


def model_temperature(metadata: dict[str, Any]) -> float:
    """The temperature a model's metadata asks for (1.0, i.e. none, when it was never calibrated)."""
    temperature = float((metadata.get("calibration") or {}).get("temperature", 1.0))
    if not temperature > 0:
        raise ValueError(f"model metadata: calibration temperature {temperature} must be > 0")
    return temperature


def mark_uncertain(prediction, min_confidence: float):
    """``prediction`` (an ``inference.predictor.FacePrediction``) with ``emotion`` set to ``"uncertain"`` when its
    confidence is below ``min_confidence``; its confidence and probabilities are kept."""
    if prediction.confidence >= min_confidence:
        return prediction
    import dataclasses

    return dataclasses.replace(prediction, emotion=UNCERTAIN)
