"""The splits of a converted directory as arrays, and the model inputs made from them.

``load_split`` reads one split (``Training``, ``PublicTest`` or ``PrivateTest``) of a directory written by
``convert_fer2013.py`` into a :class:`SplitData`, checking shapes, labels and feature width; ``model_inputs`` turns
images [+ features] into what a registry model takes. Training, evaluation, the soup and the experiments all read
data through here. Bad or missing files raise :class:`DataError`, naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errors import UserError
from parameters import EMOTIONS, FEATURE_SETS, Config


class DataError(UserError, ValueError):
    """A converted directory that is missing, incomplete or inconsistent (the message names the file)."""


@dataclass
class SplitData:
    """One split: images (n, 48, 48) uint8, labels (n,) int64, features (n, d) float32 or None, and with
    ``soft_labels`` the (n, k) float32 FER+ vote distributions."""

    images: np.ndarray
    labels: np.ndarray
    features: np.ndarray | None
    soft_labels: np.ndarray | None = None


def read_data_meta(data_dir: str | Path) -> dict[str, Any]:
    """``DIR/meta.json`` of a converted directory (data.dataset.read_meta; DataError when absent/bad)."""
    from data.dataset import read_meta

    try:
        return read_meta(Path(data_dir))
    except (FileNotFoundError, ValueError) as err:  # missing, not JSON, or from a newer format
        raise DataError(str(err)) from None


def load_soft_labels(data_dir: str | Path, split: str, n: int, n_classes: int) -> np.ndarray:
    """``DIR/<split>/soft_labels.npy`` (n, k) float32, checked; DataError saying how to make it when absent."""
    path = Path(data_dir) / split / "soft_labels.npy"
    if not path.is_file():
        raise DataError(
            f"{path} is missing: soft labels (--soft-labels) are the FER+ vote distributions; convert with "
            "convert_fer2013.py --ferplus PATH/fer2013new.csv (soft labels are written by default)"
        )
    soft = np.load(path).astype(np.float32, copy=False)
    if soft.shape != (n, n_classes):
        raise DataError(f"{path}: shape {soft.shape}, expected ({n}, {n_classes}): faces x classes")
    if not np.allclose(soft.sum(axis=1), 1.0, atol=1e-4) or soft.min() < 0:
        raise DataError(f"{path}: rows must be probability distributions (>= 0, summing to 1)")
    return soft


def load_split(
    data_dir: str | Path,
    split: str,
    feature_set: str,
    *,
    limit: int = -1,
    n_classes: int | None = None,
    soft_labels: bool = False,
) -> SplitData:
    """Load one split of a converted directory; ``limit`` >= 0 keeps the first rows (trunc_*set_to);
    ``soft_labels`` also loads ``soft_labels.npy`` (needs ``n_classes``)."""
    from data.dataset import load_converted

    data_dir = Path(data_dir)
    try:
        images, labels, features = load_converted(data_dir, split, feature_set)
    except (FileNotFoundError, ValueError) as err:  # a missing array, or arrays of different lengths
        raise DataError(str(err)) from None
    data = SplitData(np.asarray(images), np.asarray(labels, dtype=np.int64), features)
    if data.images.ndim != 3:
        raise DataError(f"{data_dir / split}/images.npy: expected (n, h, w), got {data.images.shape}")
    expected_dim = FEATURE_SETS[feature_set]
    if data.features is not None and data.features.shape[1] != expected_dim:
        raise DataError(
            f"{data_dir / split}: {feature_set!r} features have {data.features.shape[1]} columns, "
            f"expected {expected_dim}"
        )
    if n_classes is not None and len(data.labels) and (data.labels.min() < 0 or data.labels.max() >= n_classes):
        raise DataError(f"{data_dir / split}/labels.npy: labels outside 0..{n_classes - 1}")
    if soft_labels:
        if n_classes is None:
            raise ValueError("load_split(soft_labels=True) needs n_classes")
        data.soft_labels = load_soft_labels(data_dir, split, len(data.labels), n_classes)
    if limit >= 0:
        features = None if data.features is None else data.features[:limit]
        soft = None if data.soft_labels is None else data.soft_labels[:limit]
        data = SplitData(data.images[:limit], data.labels[:limit], features, soft)
    if len(data.labels) == 0:
        raise DataError(f"{data_dir / split}: no samples")
    return data


def resolve_classes(config: Config, data_meta: dict[str, Any]) -> list[str]:
    """The class names to train on: the data's. Config's ``expressions`` must match unless left at the default."""
    class_names = list(data_meta.get("class_names") or [])
    if not class_names:
        raise DataError("meta.json has no class_names")
    wanted = list(config.dataset.expressions)
    if wanted != class_names and tuple(wanted) != EMOTIONS:
        raise DataError(f"config expressions {wanted} disagree with the data's classes {class_names}")
    return class_names


def data_checksum(data_meta: dict[str, Any], train: SplitData) -> str:
    """sha256 of the source csv (from meta.json) when known, else of the Training arrays used."""
    if data_meta.get("source_sha256"):
        return str(data_meta["source_sha256"])
    digest = hashlib.sha256()
    for array in (train.images, train.labels, train.features):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def model_inputs(images: np.ndarray, features: np.ndarray | None):
    """(n, 48, 48) grey images [+ (n, d) features] -> the model's inputs: ``images[..., None]`` float32 or a list."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return x if features is None else [x, np.asarray(features, dtype=np.float32)]


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of Training features; constant columns get variance 1 (not 1e-14)."""
    features = np.asarray(features, dtype=np.float64)
    mean, variance = features.mean(axis=0), features.var(axis=0)
    variance[variance < 1e-12] = 1.0
    return mean.astype(np.float32), variance.astype(np.float32)
