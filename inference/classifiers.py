"""Models as face classifiers: (n, s, s) uint8 faces in, (n, k) float32 probabilities out.

A model of this project (``.keras`` or its ONNX twin, ``models.io`` format, temperature-scaled when calibrated) or a
peer's Keras 2 HDF5 full model (``../shared/peers``). :func:`load_classifier` picks the right one from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.backends import KerasBackend, compiled_call, open_backend
from inference.images import PredictorError  # ImageReadError's base too
from parameters import EMOTIONS

# A trained model placed here becomes the default --model of every script.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "fer_model.keras"
PEER_SUFFIXES = (".h5", ".hdf5")  # Keras 2 full models (../shared/peers): no metadata, FER2013's 7 classes


class ModelNotFoundError(PredictorError):
    """No model file given and none bundled."""


class FaceClassifier(Protocol):
    """What FacePredictor needs from a model: class names, input side, faces (n, s, s) uint8 -> (n, k) float32."""

    class_names: tuple[str, ...]
    input_size: int

    def __call__(self, faces: np.ndarray) -> np.ndarray: ...


class FerModelClassifier:
    """A model of this project (``models.io`` format): grey 0..255 faces plus the metadata's feature set.

    ``model``: a backend (``inference.backends``: ONNX Runtime or Keras; its metadata is used), or an in-memory
    keras model with its ``metadata`` (run through Keras).
    """

    def __init__(self, model, metadata: dict[str, Any] | None = None):
        self.backend = model if metadata is None else KerasBackend(model, metadata)
        self.metadata = metadata = self.backend.metadata
        self.class_names = tuple(metadata["class_names"])
        self.feature_set = metadata.get("feature_set") or "raw"
        self.feature_dim = int(metadata.get("feature_dim") or 0)
        size = metadata.get("input_size") or [48, 48]
        self.input_size = int(size[0])
        if self.feature_set != "raw" and self.feature_dim <= 0:
            raise PredictorError(f"model metadata: feature_set {self.feature_set!r} but feature_dim {self.feature_dim}")
        self._extractor = None
        if "landmarks" in self.feature_set:  # load the 68-point model once, now, so a missing file fails early
            from data.landmarks import LandmarkExtractor

            try:
                self._extractor = LandmarkExtractor()
            except (OSError, ValueError) as err:
                raise PredictorError(f"the {self.feature_set!r} features need dlib's landmark model: {err}") from err
        from inference.calibration import model_temperature

        self.temperature = model_temperature(metadata)  # fitted on PublicTest by calibrate.py; 1.0: uncalibrated

    def _features(self, faces: np.ndarray) -> np.ndarray | None:
        if self.feature_set == "raw":
            return None
        from data.features import compute_features

        features = compute_features(faces, self.feature_set, extractor=self._extractor)
        if features is None or features.shape != (len(faces), self.feature_dim):
            got = None if features is None else features.shape
            raise PredictorError(
                f"features for {self.feature_set!r} have shape {got}, model expects ({len(faces)}, {self.feature_dim})"
            )
        return features.astype(np.float32, copy=False)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        probabilities = self.backend.predict(faces, self._features(faces))
        if self.temperature == 1.0:
            return probabilities
        from inference.calibration import apply_temperature

        return apply_temperature(probabilities, self.temperature)


class PeerClassifier:
    """A Keras 2 HDF5 full model such as ``../shared/peers/fer2013_mini_XCEPTION.102-0.66.hdf5``: grey faces of the
    model's input side, scaled ``x / 255`` then ``(x - 0.5) * 2``; FER2013's 7 classes in csv order."""

    def __init__(self, path: str | Path):
        import keras

        try:
            self.model = keras.models.load_model(path, compile=False)
        except Exception as err:  # h5py's OSError for a garbage file, ValueError for a foreign one, ...
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise PredictorError(f"{path}: not a Keras HDF5 model ({first})") from None
        self.input_size = int(self.model.input_shape[1])
        n_classes = int(self.model.output_shape[-1])
        if n_classes != len(EMOTIONS):
            raise PredictorError(f"{path}: {n_classes} outputs; a peer model must have FER2013's 7 classes")
        self.class_names = EMOTIONS
        self.metadata = {"model_name": Path(path).name, "class_names": list(EMOTIONS), "feature_set": "raw"}
        self._call = compiled_call(self.model)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        x = (faces.astype(np.float32) / 255.0 - 0.5) * 2.0
        return np.asarray(self._call(x[..., None]), dtype=np.float32)


class TTAClassifier:
    """Test-time augmentation around any FaceClassifier: the probabilities of several views of each face, averaged.

    ``flip``: the face and its mirror image (2 calls' worth of faces in one call); ``ten-crop``: five windows of
    46/48 of the side (corners and centre, resized back) and their mirrors (``data.augment.ten_crop_views``, 10x).
    Features (landmarks, HOG) are recomputed by the wrapped classifier from each view's pixels.
    """

    def __init__(self, classifier: FaceClassifier, mode: str):
        from parameters import TTA_MODES

        if mode not in TTA_MODES:
            raise PredictorError(f"TTA {mode!r}: choose one of {', '.join(TTA_MODES)}")
        self.classifier, self.mode = classifier, mode
        self.class_names, self.input_size = classifier.class_names, classifier.input_size
        self.metadata = getattr(classifier, "metadata", {})
        if hasattr(classifier, "backend"):
            self.backend = classifier.backend

    def views(self, faces: np.ndarray) -> list[np.ndarray]:
        from data.augment import flip_images, ten_crop_views

        if self.mode == "flip":
            return [faces, flip_images(faces)]
        return ten_crop_views(faces, crop=max(1, round(faces.shape[1] * 46 / 48)))

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        if not len(faces):
            return self.classifier(faces)
        views = self.views(faces)
        probabilities = self.classifier(np.concatenate(views))  # one model call for every view
        return probabilities.reshape(len(views), len(faces), -1).mean(axis=0).astype(np.float32, copy=False)


def with_tta(classifier: FaceClassifier, mode: str | None) -> FaceClassifier:
    """``classifier`` itself for ``none``/None, else a :class:`TTAClassifier` averaging ``mode``'s views."""
    return classifier if mode in (None, "none") else TTAClassifier(classifier, mode)


def add_tta_argument(parser, default: str = "none") -> None:
    """``--tta {none,flip,ten-crop}`` for the commands that classify photo faces (predict, video, serve, benchmarks)."""
    from parameters import TTA_MODES

    parser.add_argument("--tta", choices=("none", *TTA_MODES), default=default,
                        help="test-time augmentation of each face: flip averages it with its mirror image (2x the "
                             "classifier's cost), ten-crop over five 46/48 crops and their mirrors (10x); the "
                             "classifier is a small part of a photo's time next to detection (default %(default)s)")


def is_peer_file(path: str | Path) -> bool:
    """Whether ``path`` names a published peer's Keras 2 HDF5 full model (by its suffix)."""
    return Path(path).suffix.lower() in PEER_SUFFIXES


def resolve_model_path(model_path: str | Path | None) -> Path:
    """The given path (must exist), else the bundled DEFAULT_MODEL_PATH, else ModelNotFoundError."""
    if model_path is None:
        if DEFAULT_MODEL_PATH.is_file():
            return DEFAULT_MODEL_PATH
        raise ModelNotFoundError(
            f"no --model given and no bundled model at {DEFAULT_MODEL_PATH}; train one with train.py and pass "
            "--model PATH/TO/model.keras"
        )
    path = Path(model_path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    return path


def load_classifier(model_path: str | Path | None = None, backend: str = "auto") -> FaceClassifier:
    """A model of this project (``.keras``, its ``.onnx`` twin, or an ``.onnx`` export) or a peer ``.h5``/``.hdf5``.

    ``backend``: ``auto`` runs a ``.keras`` model on its ONNX twin when one sits beside it, else through Keras
    (``inference.backends.open_backend``); ``onnx`` or ``keras`` insist on one; ``int8`` runs its int8 export.
    Peer models run through Keras.
    """
    path = resolve_model_path(model_path)
    if is_peer_file(path):
        if backend in ("onnx", "int8"):
            raise PredictorError(f"{path}: peer models run through Keras only (drop --backend {backend})")
        return PeerClassifier(path)
    return FerModelClassifier(open_backend(path, backend))
