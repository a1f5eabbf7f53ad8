"""Evaluation: accuracy, per-class precision/recall/F1 and confusion matrix of a saved model on a split.

``evaluate`` works on arrays; ``evaluate_run`` loads ``RUN_DIR/model.keras`` (or ``model.skops``), checks its
metadata against the data directory, evaluates PublicTest and PrivateTest and writes::

    RUN_DIR/metrics.json                       private_test_accuracy, public_test_accuracy and the full reports
    RUN_DIR/confusion_matrix_<split>.png/.json
    RUN_DIR/classification_report_<split>.txt

PrivateTest is for reporting only: nothing here feeds back into training or model selection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data.splits import load_split, model_inputs, read_data_meta
from errors import UserError


class EvaluationError(UserError, ValueError):
    """A model that does not fit the data it is scored on (classes, features, output shape)."""


def predict_probabilities(model, images: np.ndarray, features: np.ndarray | None, *, batch_size: int = 256):
    """``(n, n_classes)`` float32 probabilities for ``(n, 48, 48)`` grey images [+ ``(n, d)`` features]."""
    return np.asarray(model.predict(model_inputs(images, features), batch_size=batch_size, verbose=0), np.float32)


def evaluate(
    model,
    metadata: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    features: np.ndarray | None,
    *,
    tta: bool | str = False,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``(n, 48, 48)`` images with ``(n,)`` int labels [and ``(n, d)`` features].

    ``tta``: ``True`` or ``"flip"`` averages the probabilities of each face and its mirror image (landmarks mirrored,
    HOG recomputed from the mirrored face); ``"ten-crop"`` averages ten views (``data.augment.ten_crop_views``; raw
    faces only). Returns ``accuracy``, ``n``, ``class_names``, ``per_class`` {name: precision, recall, f1, support},
    ``macro_avg``, ``weighted_avg``, ``confusion_matrix`` (rows true, columns predicted), ``report`` (text), ``tta``
    (whether any was applied) and ``tta_mode`` (``"none"``, ``"flip"`` or ``"ten-crop"``).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    from data.augment import flip_features, flip_images, ten_crop_views

    mode = tta_mode(tta)
    class_names = list(metadata["class_names"])
    k = len(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise EvaluationError(f"labels outside 0..{k - 1} for the model's {k} classes")
    feature_set = metadata.get("feature_set", "raw")
    if mode == "ten-crop":
        if features is not None:
            raise EvaluationError(f"ten-crop TTA needs a model on raw faces, not the {feature_set!r} feature set "
                                  "(its landmarks and HOG would have to follow each crop); use flip TTA")
        probabilities = np.mean(
            [predict_probabilities(model, view, None, batch_size=batch_size) for view in ten_crop_views(images)],
            axis=0,
        ) if len(images) else predict_probabilities(model, images, None, batch_size=batch_size)
    else:
        probabilities = predict_probabilities(model, images, features, batch_size=batch_size)
    if probabilities.shape != (len(labels), k):
        raise EvaluationError(f"model output {probabilities.shape} does not match {len(labels)} samples x {k} classes")
    if mode == "flip":  # every feature set can be mirrored: landmarks are re-indexed, HOG is recomputed
        flipped = flip_images(images)
        mirrored = None
        if features is not None:
            mirrored = flip_features(np.asarray(features), feature_set, images.shape[2], flipped)
        probabilities = 0.5 * (probabilities + predict_probabilities(model, flipped, mirrored))
    predictions = probabilities.argmax(axis=1)
    report = classification_report(
        labels, predictions, labels=list(range(k)), target_names=class_names, output_dict=True, zero_division=0
    )
    text = classification_report(
        labels, predictions, labels=list(range(k)), target_names=class_names, digits=4, zero_division=0
    )
    metric_names = ("precision", "recall", "f1-score", "support")
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "n": int(len(labels)),
        "class_names": class_names,
        "per_class": {
            name: {m.replace("-score", ""): float(report[name][m]) for m in metric_names} for name in class_names
        },
        "macro_avg": {m.replace("-score", ""): float(report["macro avg"][m]) for m in metric_names},
        "weighted_avg": {m.replace("-score", ""): float(report["weighted avg"][m]) for m in metric_names},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=list(range(k))).tolist(),
        "report": text,
        "tta": mode != "none",
        "tta_mode": mode,
    }


def tta_mode(tta: bool | str | None) -> str:
    """``False``/``None``/``"none"`` -> ``"none"``, ``True`` -> ``"flip"``, or a name from ``parameters.TTA_MODES``."""
    from parameters import TTA_MODES

    if tta is None or tta is False or tta == "none":
        return "none"
    if tta is True:
        return "flip"
    if tta not in TTA_MODES:
        raise EvaluationError(f"TTA {tta!r}: choose one of {', '.join(TTA_MODES)}")
    return tta


def plot_confusion_matrix(
    matrix, class_names: list[str], path: str | Path, title: str = "", *, column_names: list[str] | None = None
) -> Path:
    """Row-normalised confusion matrix with counts as a PNG (matplotlib, no global backend).

    ``column_names``: labels of the predicted columns when they differ from the rows (e.g. an extra "no face").
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=np.float64)
    columns = list(column_names) if column_names is not None else list(class_names)
    if matrix.shape != (len(class_names), len(columns)):
        raise ValueError(f"confusion matrix {matrix.shape} does not match {len(class_names)} x {len(columns)} names")
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.0 + 0.9 * len(columns), 0.8 + 0.8 * len(class_names)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in ticks:
        for j in range(len(columns)):
            ax.text(j, i, f"{int(matrix[i, j])}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=100)
    return Path(path)


def check_compatible(metadata: dict[str, Any], data_meta: dict[str, Any], data_dir: Path, model_path: Path) -> None:
    """Raise EvaluationError when the model's classes differ from the data directory's."""
    model_classes, data_classes = list(metadata["class_names"]), list(data_meta.get("class_names") or [])
    if model_classes != data_classes:
        raise EvaluationError(
            f"classes disagree: {model_path} predicts {model_classes} but {data_dir} holds {data_classes}"
        )


def evaluate_run(
    model_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    tta: bool | str = False,
    splits: tuple[str, ...] = ("PublicTest", "PrivateTest"),
    verbose: int = 1,
) -> dict[str, Any]:
    """Evaluate a saved model on ``splits`` of ``data_dir``; write metrics.json etc. to ``out_dir``
    (default: the model's folder). Returns the metrics dict."""
    from models.io import load_model

    model_path, data_dir = Path(model_path), Path(data_dir)
    out_dir = Path(out_dir) if out_dir is not None else model_path.parent
    data_meta = read_data_meta(data_dir)
    from models.io import read_metadata

    check_compatible(read_metadata(model_path), data_meta, data_dir, model_path)  # before the slow load
    model, metadata = load_model(model_path)
    feature_set = metadata["feature_set"]
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"model_path": str(model_path), "data_dir": str(data_dir), "tta": tta_mode(tta) != "none",
                               "tta_mode": tta_mode(tta)}
    for split in splits:
        data = load_split(data_dir, split, feature_set, n_classes=len(metadata["class_names"]))
        if data.features is not None and data.features.shape[1] != metadata["feature_dim"]:
            raise EvaluationError(f"{split}: features have {data.features.shape[1]} columns, model expects "
                                f"{metadata['feature_dim']}")
        result = evaluate(model, metadata, data.images, data.labels, data.features, tta=tta)
        stem = f"confusion_matrix_{split}"
        (out_dir / f"{stem}.json").write_text(
            json.dumps({"class_names": result["class_names"], "matrix": result["confusion_matrix"]}, indent=1) + "\n"
        )
        plot_confusion_matrix(
            result["confusion_matrix"], result["class_names"], out_dir / f"{stem}.png",
            f"{split}: accuracy {result['accuracy']:.2%}",
        )
        (out_dir / f"classification_report_{split}.txt").write_text(result["report"])
        key = "private_test_accuracy" if split == "PrivateTest" else "public_test_accuracy"
        if split in ("PrivateTest", "PublicTest"):
            metrics[key] = result["accuracy"]
        metrics[split] = {k: v for k, v in result.items() if k != "report"}
        if verbose:
            print(f"{split}: accuracy {result['accuracy']:.4f} ({result['n']} faces, TTA {result['tta_mode']})")
            print(result["report"], flush=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
