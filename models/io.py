"""Save and load models together with the metadata prediction needs.

A Keras model is ``PATH.keras`` (Keras 3 zip) with ``fer_metadata.json`` added inside the zip and the same JSON
next to it as ``PATH.meta.json`` (readable without Keras). Loading uses Keras safe mode (no arbitrary code) and
``compile=False``. The SVM baseline is ``PATH.skops`` (``skops.io``: loads without unpickling, and only the
types in ``SVM_TRUSTED_TYPES`` besides skops' own safe defaults) plus the same sidecar. No model file a user passes
can run code when loaded: a legacy ``.joblib`` pickle is refused, with the command that converts a trusted one.

Metadata keys (docs/DESIGN.md): ``format_version``, ``model_name``, ``class_names``, ``expressions``,
``feature_set``, ``feature_dim``, ``input_size`` [48, 48], ``normalisation`` (text), ``config``
(Config.to_dict()), ``data_sha256``, ``metrics``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from errors import UserError

METADATA_NAME = "fer_metadata.json"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("class_names", "feature_set", "feature_dim", "model_name")
SVM_SUFFIX = ".skops"
LEGACY_SVM_SUFFIX = ".joblib"
# Types an SVM file may hold beyond skops' default-trusted ones (builtins, numpy, scikit-learn estimators). The
# StandardScaler -> SVC pipeline needs none; anything else in a file is refused before it is loaded.
SVM_TRUSTED_TYPES: tuple[str, ...] = ()


class ModelFileError(UserError, ValueError):
    """A model file that is missing, unreadable or lacks its metadata."""


def legacy_svm_error(path: Path) -> ModelFileError:
    """The refusal of a ``.joblib`` pickle, with the way out."""
    return ModelFileError(
        f"{path}: a .joblib SVM is a pickle, which can run code when loaded, so it is refused; retrain it "
        f"(train.py --model svm writes model{SVM_SUFFIX}), or if you made this file yourself convert it once with "
        f"`python -m models.legacy_svm {path} --trust`"
    )


def sidecar_path(path: str | Path) -> Path:
    """``run/model.keras`` -> ``run/model.meta.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.meta.json")


def export_sidecar_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.meta.json`` (distinct from the Keras model's ``model.meta.json``): the metadata
    ``models.export`` writes beside an exported file."""
    path = Path(path)
    return path.with_name(f"{path.name}.meta.json")


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serialisable")


def _dumps(metadata: dict[str, Any]) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, **metadata}, indent=1, default=_json_default)


def save_model(model, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model`` with ``metadata`` to ``path`` (``.keras``, or ``.skops`` for the SVM) atomically.

    Returns the path. The file is written under a temporary name and renamed, so an interrupted save never
    leaves a truncated model behind.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}")
    text = _dumps(metadata)
    if path.suffix not in (SVM_SUFFIX, ".keras"):
        raise ValueError(f"{path}: model files end in .keras (or {SVM_SUFFIX} for the svm)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:  # a failed or interrupted save (full disk, Ctrl-C) leaves neither a truncated model nor the partial file
        if path.suffix == SVM_SUFFIX:
            import skops.io

            blob = {"pipeline": model.pipeline, "n_classes": int(model.n_classes), "metadata": json.loads(text)}
            skops.io.dump(blob, tmp)
        else:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_NAME, text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar_path(path).write_text(text + "\n")
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a saved model without loading its weights (from inside the file, else the sidecar)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix == LEGACY_SVM_SUFFIX:
        raise legacy_svm_error(path)
    metadata = None
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                if METADATA_NAME in archive.namelist():
                    metadata = json.loads(archive.read(METADATA_NAME))
        except zipfile.BadZipFile:
            raise ModelFileError(f"{path}: not a .keras zip archive") from None
    sidecar = export_sidecar_path(path) if path.suffix == ".onnx" else sidecar_path(path)
    if metadata is None and sidecar.is_file():
        try:
            metadata = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelFileError(f"{sidecar}: unreadable model metadata ({err})") from None
    if metadata is None and path.suffix == SVM_SUFFIX:
        metadata = _load_svm_blob(path)["metadata"]
    if not isinstance(metadata, dict) and metadata is not None:
        raise ModelFileError(f"{path}: its metadata is a {type(metadata).__name__}, not a JSON object")
    if metadata is None:
        raise ModelFileError(f"{path}: no {METADATA_NAME} inside and no {sidecar.name} next to it")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {missing}")
    return metadata


def load_model(path: str | Path):
    """Load ``(model, metadata)``; Keras models in safe mode, uncompiled (for inference and evaluation)."""
    path = Path(path)
    metadata = read_metadata(path)
    if path.suffix == SVM_SUFFIX:
        from models.svm import SvmModel

        blob = _load_svm_blob(path)
        return SvmModel(blob["pipeline"], blob["n_classes"]), metadata
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # keras raises several types; name the file
        raise ModelFileError(f"{path}: cannot load the Keras model ({err})") from err
    refresh_normalization(model)
    return model, metadata


def _load_svm_blob(path: Path) -> dict[str, Any]:
    """The ``{"pipeline", "n_classes", "metadata"}`` dict of an SVM file, refusing any type not trusted.

    skops reads a schema from the zip and rebuilds only the types it (or SVM_TRUSTED_TYPES) allows; nothing
    is unpickled, so a crafted file fails here instead of running code.
    """
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        unexpected = sorted(set(untrusted) - set(SVM_TRUSTED_TYPES))
        if unexpected:
            raise ModelFileError(f"{path}: refused, it holds types an SVM model never contains: {unexpected[:5]}")
        blob = skops.io.load(path, trusted=list(SVM_TRUSTED_TYPES))
    except ModelFileError:
        raise
    except Exception as err:  # skops raises many types for a damaged or foreign zip; name the file
        raise ModelFileError(f"{path}: not a readable {SVM_SUFFIX} SVM model ({type(err).__name__}: {err})") from None
    from sklearn.pipeline import Pipeline

    if not (
        isinstance(blob, dict)
        and isinstance(blob.get("pipeline"), Pipeline)
        and isinstance(blob.get("n_classes"), int)
        and isinstance(blob.get("metadata"), dict)
    ):
        raise ModelFileError(f"{path}: not an SVM model of this toolkit (expected pipeline, n_classes, metadata)")
    return blob


def refresh_normalization(model) -> None:
    """Make every ``Normalization`` layer use the mean/variance now in its weights.

    Keras's Normalization keeps a tensor copy of its statistics that only ``finalize_state`` refreshes; after
    ``set_weights`` or assigning the statistics, call this before the model's first (compiled) call.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
