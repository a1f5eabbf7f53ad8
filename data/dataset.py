"""Read a directory written by ``convert_fer2013.py`` (layout in docs/DESIGN.md).

    >>> images, labels, features = load_converted("fer2013_features", "Training", "landmarks_hog_windows")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data.features import assemble_features
from parameters import FEATURE_SETS

FORMAT_VERSION = 1


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``DIR/meta.json`` as a dict.

    Raises:
        FileNotFoundError: no meta.json (not a converted directory), naming the file.
        ValueError: meta.json is not valid JSON or is from a newer format.
    """
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {directory} is not a converted directory (run convert_fer2013.py)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    version = meta.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this code reads ({FORMAT_VERSION})")
    return meta


def _load(path: Path, why: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing ({why})")
    return np.load(path)


def labels_to_indices(labels: np.ndarray) -> np.ndarray:
    """(n, k) one-hot or (n,) integer labels -> (n,) int64 class indices."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.argmax(axis=1).astype(np.int64)
    return labels.astype(np.int64)


def load_converted(
    directory: str | Path, split: str, feature_set: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One split of a converted directory, with the features of ``feature_set``.

    Args:
        directory: the ``--out`` directory of ``convert_fer2013.py``.
        split: ``Training``, ``PublicTest`` or ``PrivateTest``.
        feature_set: a key of ``parameters.FEATURE_SETS``.

    Returns:
        ``images`` (n, 48, 48) uint8, ``labels`` (n,) int64 class indices into ``meta["class_names"]`` (whether
        stored one-hot or not), ``features`` (n, FEATURE_SETS[feature_set]) float32 or None for ``raw``.

    Raises:
        FileNotFoundError: meta.json, the split or an array the feature set needs is absent; the message names
            the file and says which conversion flags produce it.
        ValueError: unknown feature set, or arrays whose lengths disagree.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose from {list(FEATURE_SETS)}")
    directory = Path(directory)
    meta = read_meta(directory)
    folder = directory / split
    if not folder.is_dir():
        present = [s for s in meta.get("counts", {}) if (directory / s).is_dir()]
        raise FileNotFoundError(f"{folder} is missing: split {split!r} is not in the converted data ({present})")
    images = _load(folder / "images.npy", "every converted split has it")
    labels = labels_to_indices(_load(folder / "labels.npy", "every converted split has it"))
    if len(labels) != len(images):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")

    arrays: dict[str, np.ndarray] = {}
    if feature_set != "raw":
        arrays["landmarks"] = _load(
            folder / "landmarks.npy", f"feature set {feature_set!r} needs landmarks: convert with --landmarks"
        )
    hog_kind = meta.get("hog")
    if feature_set == "landmarks_hog":
        plain = folder / "hog_plain.npy"
        if not plain.is_file() and hog_kind == "plain":
            plain = folder / "hog_features.npy"
        arrays["hog_plain"] = _load(plain, "feature set 'landmarks_hog' needs plain HOG: convert with --hog")
    elif feature_set == "landmarks_hog_windows":
        path = folder / "hog_features.npy"
        if path.is_file() and hog_kind != "windows":
            raise FileNotFoundError(
                f"{path} holds {hog_kind!r} HOG, not sliding-window HOG (needed by 'landmarks_hog_windows'): "
                "convert with --hog --hog-windows"
            )
        arrays["hog_windows"] = _load(
            path, "feature set 'landmarks_hog_windows' needs sliding-window HOG: convert with --hog --hog-windows"
        )
    for name, array in arrays.items():
        if len(array) != len(images):
            raise ValueError(f"{folder}: {len(images)} images but {len(array)} rows of {name}")
    features = assemble_features(feature_set, **arrays)
    return images, labels, features
