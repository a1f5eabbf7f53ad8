"""Classifier backends: one small interface over ONNX Runtime and Keras, so prediction can run without TensorFlow.

A backend turns face crops (and their feature vectors) into class probabilities::

    backend.predict(images, features) -> (n, k) float32 probabilities over backend.metadata["class_names"]

    images:   (n, s, s) or (n, s, s, 1), grey levels 0..255 (uint8 or float32)
    features: (n, d) float32 raw features for feature-set models (standardised inside the graph), else None

``open_backend(path)`` chooses one for a model file (``choice="auto"``):

* ``model.onnx`` (with its ``model.onnx.meta.json``): ONNX Runtime.
* ``model.keras`` with its ONNX twin ``model.onnx`` beside it, exported from this very file (the twin's sidecar
  records the ``.keras`` file's SHA-256): ONNX Runtime on the twin. TensorFlow is never imported.
* ``model.keras`` without a twin, or with a stale one: Keras (imports TensorFlow: ~5 s and ~900 MB), with a one-line
  note (logged as a warning, shown on stderr) saying how to make the twin.
* ``model.joblib`` (the SVM baseline): loaded by ``models.io`` and called as it is.

``choice="onnx"`` insists on ONNX Runtime (an error when there is no fresh twin); ``choice="keras"`` always loads the
``.keras`` file through Keras (the reference the twin is checked against); ``choice="int8"`` runs the int8 export
``model.int8.onnx`` beside the ``.keras`` file (``export.py --int8``: 2.3x the classifier's images/s, accuracy
within a few tenths of a point; an error when it is absent or stale).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from errors import UserError
from models.export import OUTPUT_NAME, default_export_path, export_sidecar_path, file_sha256

BACKENDS = ("auto", "onnx", "keras", "int8")
EXPORT_COMMAND = "python export.py --model {path} --format onnx"
INT8_COMMAND = EXPORT_COMMAND + " --int8 --calibration ../shared/data/fer2013.csv.gz"

log = logging.getLogger(__name__)


class BackendError(UserError, ValueError):
    """A model file that no backend can run as asked (missing twin, missing metadata, wrong inputs)."""


class ClassifierBackend(Protocol):
    """What the face pipeline needs from a model runtime."""

    name: str  # "onnx" or "keras"
    path: Path | None  # the file that is run (None for an in-memory model)
    metadata: dict[str, Any]  # models.io metadata: class_names, feature_set, feature_dim, input_size, ...

    def predict(self, images: np.ndarray, features: np.ndarray | None = None) -> np.ndarray: ...


def _as_image_batch(images: np.ndarray) -> np.ndarray:
    """(n, s, s[, 1]) grey levels -> contiguous (n, s, s, 1) float32, the layout both runtimes take."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"expected face crops of shape (n, s, s) or (n, s, s, 1), got {images.shape}")
    return np.ascontiguousarray(images)


# ------------------------------------------------------------------------------------------------------ ONNX


def onnx_twin_path(model_path: str | Path) -> Path:
    """``run/model.keras`` -> ``run/model.onnx``, where ``models.export.write_onnx_twin`` writes the twin."""
    return default_export_path(model_path, "onnx")


def read_onnx_metadata(onnx_path: str | Path) -> dict[str, Any]:
    """The sidecar metadata of an exported ``.onnx`` file; BackendError naming the file when absent or broken."""
    sidecar = export_sidecar_path(onnx_path)
    try:
        metadata = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise BackendError(
            f"{onnx_path}: no metadata {sidecar.name} beside it (export the model with "
            f"'{EXPORT_COMMAND.format(path='MODEL.keras')}')"
        ) from None
    except (OSError, ValueError) as err:
        raise BackendError(f"{sidecar}: unreadable metadata ({err})") from None
    missing = [key for key in ("class_names", "feature_set") if key not in metadata]
    if missing:
        raise BackendError(f"{sidecar}: metadata lacks {missing}")
    return metadata


def twin_problem(model_path: str | Path, int8: bool = False) -> str | None:
    """Why the ONNX twin of ``model_path`` (``int8``: its int8 export) cannot stand in for it, or None when it can.

    A twin stands in when ``model.onnx`` and its sidecar exist and the sidecar's ``export.source_sha256`` (written by
    ``models.export``) is the ``.keras`` file's hash; a sidecar without a hash (older exports) is trusted.
    """
    model_path = Path(model_path)
    twin = default_export_path(model_path, "onnx", int8=int8)
    kind = "int8 export" if int8 else "ONNX twin"
    if not twin.is_file():
        return f"no {kind} {twin.name} beside it"
    if not export_sidecar_path(twin).is_file():
        return f"its {kind} {twin.name} has no {export_sidecar_path(twin).name}"
    try:
        recorded = json.loads(export_sidecar_path(twin).read_text()).get("export", {}).get("source_sha256")
    except (OSError, ValueError):
        return f"the metadata of its {kind} {twin.name} is unreadable"
    if recorded is not None and recorded != file_sha256(model_path):
        return f"its {kind} {twin.name} was exported from a different version of the file (stale)"
    return None


class OnnxBackend:
    """An exported model run by ONNX Runtime on the CPU; imports onnxruntime only (~0.2 s), never TensorFlow.

    ``threads``: ONNX Runtime intra-op threads. One thread is the fastest for the small batches of a photo or a
    video frame (one to a few faces) and leaves the other cores to the detector; 0 lets ONNX Runtime use them all.
    """

    name = "onnx"

    def __init__(self, path: str | Path, metadata: dict[str, Any] | None = None, *, threads: int = 1):
        import onnxruntime

        self.path = Path(path)
        self.metadata = metadata if metadata is not None else read_onnx_metadata(self.path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the CPU provider's notes are noise to a user
        # Idle worker threads spinning for work would take CPU from the detector between model calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf types; name the file
            raise BackendError(f"{self.path}: not an ONNX model ONNX Runtime can load ({err})") from None
        names = {i.name for i in self._session.get_inputs()}
        wants_features = int(self.metadata.get("feature_dim") or 0) > 0
        expected = {"image", "features"} if wants_features else {"image"}
        if names != expected:
            raise BackendError(f"{self.path}: graph inputs {sorted(names)}, its metadata implies {sorted(expected)}")
        if OUTPUT_NAME not in {o.name for o in self._session.get_outputs()}:
            raise BackendError(f"{self.path}: no output named {OUTPUT_NAME!r} (export it with models.export)")

    def predict(self, images: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        feed = {"image": _as_image_batch(images)}
        if features is not None:
            feed["features"] = np.ascontiguousarray(features, dtype=np.float32)
        return np.asarray(self._session.run([OUTPUT_NAME], feed)[0], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------- Keras


def compiled_call(model) -> Callable[[Any], Any]:
    """``model(x, training=False)`` as a tf.function: a plain eager call costs several ms of Python per frame and
    ``model.predict`` far more; the traced graph is reused for every batch size after the first few.
    Under another Keras backend (``KERAS_BACKEND=jax`` or ``torch``) it is ``model.predict_on_batch``, that
    backend's compiled predict step.

    Models that are not Keras networks (the SVM baseline, ``models.svm.SvmModel``) are called as they are.
    """
    import keras

    if not isinstance(model, keras.Model):
        return model
    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch
    import tensorflow as tf

    return tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)


class KerasBackend:
    """A model in memory (a ``keras.Model``, or the SVM baseline) called through Keras / TensorFlow."""

    name = "keras"

    def __init__(self, model, metadata: dict[str, Any], path: str | Path | None = None):
        self.model, self.metadata = model, metadata
        self.path = None if path is None else Path(path)
        self._call = compiled_call(model)

    @classmethod
    def load(cls, path: str | Path) -> KerasBackend:
        """A ``.keras`` (or ``.joblib``) file saved by ``models.io.save_model``, with its metadata."""
        from models.io import load_model

        model, metadata = load_model(path)
        return cls(model, metadata, path)

    def predict(self, images: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        images = _as_image_batch(images)
        inputs = images if features is None else [images, np.asarray(features, dtype=np.float32)]
        return np.asarray(self._call(inputs), dtype=np.float32)


# --------------------------------------------------------------------------------------------------- choice


def add_backend_argument(parser) -> None:
    """``--backend auto|onnx|keras``, the same flag in predict.py, predict_from_video.py and serve.py."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="classifier runtime: auto = the model's ONNX twin when present (no TensorFlow), else Keras; onnx or "
        "keras insist; int8 = the model's int8 export MODEL.int8.onnx (export.py --int8: a 2.3x faster classifier, "
        "as accurate within a few tenths of a point)",
    )


def needs_tensorflow(path: str | Path, choice: str = "auto") -> bool:
    """Whether :func:`open_backend` would run ``path`` through Keras (so TensorFlow gets imported)."""
    path = Path(path)
    if path.suffix == ".onnx" or choice in ("onnx", "int8"):
        return False
    return choice == "keras" or path.suffix != ".keras" or twin_problem(path) is not None


def open_backend(path: str | Path, choice: str = "auto") -> ClassifierBackend:
    """The backend that runs the model file ``path``: see the module docstring for ``choice``.

    Raises BackendError when ``choice`` cannot be honoured (``onnx`` for a ``.keras`` without a fresh twin,
    ``keras`` for a bare ``.onnx`` file) and models.io.ModelFileError for a broken ``.keras`` file.
    """
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r}; choose from {list(BACKENDS)}")
    path = Path(path)
    if path.suffix == ".onnx":
        if choice == "keras":
            raise BackendError(f"{path}: an ONNX file runs on ONNX Runtime; give the .keras model for --backend keras")
        backend = OnnxBackend(path)
        if choice == "int8" and not backend.metadata.get("export", {}).get("quantization"):
            raise BackendError(f"{path}: not an int8 export (make one: '{INT8_COMMAND.format(path='MODEL.keras')}')")
        return backend
    if choice == "int8":
        problem = twin_problem(path, int8=True) if path.suffix == ".keras" else "only .keras models have int8 exports"
        if problem is not None:
            raise BackendError(f"{path}: {problem}; make it with '{INT8_COMMAND.format(path=path)}'")
        return OnnxBackend(default_export_path(path, "onnx", int8=True))
    if path.suffix == ".keras" and choice != "keras":
        problem = twin_problem(path)
        if problem is None:
            return OnnxBackend(onnx_twin_path(path))
        if choice == "onnx":
            raise BackendError(f"{path}: {problem}; make it with '{EXPORT_COMMAND.format(path=path)}'")
        log.warning(
            "note: %s: %s, so it runs through TensorFlow (slow start); make the twin with '%s'",
            path, problem, EXPORT_COMMAND.format(path=path),
        )
    elif choice == "onnx":
        raise BackendError(f"{path}: only .keras models with an ONNX twin, or .onnx files, run on ONNX Runtime")
    return KerasBackend.load(path)
