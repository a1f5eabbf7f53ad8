"""The one face pipeline shared by ``predict.py`` and ``predict_from_video.py``.

image (any size; grey, BGR, BGRA; 8- or 16-bit; float 0..1)
  -> grey uint8
  -> face detection (dlib frontal HOG detector, or OpenCV's bundled Haar cascade), run on a copy downscaled to at
     most ``detect_size`` pixels on its longer side (dlib costs ~18 ms on a 596x336 frame, ~2-3 ms at half
     size), boxes mapped back to the full image; retried at full resolution when the small copy shows no face
  -> each face cropped with the margin that frames it like a FER2013 image, resized to the model's input (48x48)
  -> the features the model was trained with (``data.features.compute_features`` with the metadata's feature set)
  -> one batched model call for all faces of the image -> probabilities for the model's classes.

    >>> predictor = FacePredictor("models/pretrained/fer_model.keras")        # doctest: +SKIP
    >>> faces = predictor.predict(cv2.imread("photo.jpg"))                   # doctest: +SKIP
    >>> [(p.box, p.emotion, round(p.confidence, 2)) for p in faces]          # doctest: +SKIP
    [((211, 77, 139, 139), 'Happy', 0.91)]

Arrays follow OpenCV's conventions: colour images are BGR(A), boxes are ``(x, y, w, h)`` in pixels of the input.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from errors import UserError
from inference.backends import BACKENDS, KerasBackend, compiled_call, open_backend

# Detection, cropping and alignment live in inference.faces; the names are re-exported for older imports.
from inference.faces import (  # noqa: F401
    CROP_FRAMING,
    DETECTORS,
    Box,
    DetectedFace,
    FaceFinder,
    FacePipeline,
    clip_box,
    crop_face,
    make_detector,
)
from inference.image_limits import DEFAULT_MAX_PIXELS, check_decoded_pixels, check_image_pixels

# A trained model placed here (issue 5) becomes the default for --model in both scripts.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "fer_model.keras"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".jp2")
PEER_SUFFIXES = (".h5", ".hdf5")  # Keras 2 full models (../shared/peers): no metadata, FER2013's 7 classes
FER2013_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

class PredictorError(UserError):
    """A problem the user can fix (bad file, missing model, bad source); the message says what and where."""


class ImageReadError(PredictorError):
    """A file that cannot be read as an image; the message names it."""


class ModelNotFoundError(PredictorError):
    """No model file given and none bundled."""


class NonFiniteOutputError(PredictorError):
    """The model returned NaN or infinite probabilities."""


@dataclass(frozen=True)
class FacePrediction:
    """One face: ``box`` (x, y, w, h) in input pixels, the top class, its probability, and all probabilities."""

    box: Box
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    face: np.ndarray | None = field(default=None, repr=False, compare=False)  # the (s, s) uint8 crop the model saw

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"box": [x, y, w, h], "emotion", "confidence", "probabilities": {class: p}}``."""
        return {
            "box": [int(v) for v in self.box],
            "emotion": self.emotion,
            "confidence": round(float(self.confidence), 6),
            "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
        }


# --------------------------------------------------------------------------------------------------- images


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as stored: (h, w) grey or (h, w, 3|4) BGR(A), uint8 or uint16.

    Raises ImageReadError naming the file when it is missing, a directory, not a decodable image, or larger than
    ``max_pixels`` (checked from the header before decoding where the format allows; None: no cap).
    Reads through ``np.fromfile`` so non-ASCII paths work on every platform.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        check_image_pixels(path, max_pixels)
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise ImageReadError(str(err)) from None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # e.g. OpenCV's own pixel limit on a header PIL could not read
        image = None
    if image is None:
        raise ImageReadError(f"{path}: not an image OpenCV can decode (empty, corrupt or not an image file)")
    try:
        check_decoded_pixels(path, image.shape, max_pixels)
    except ValueError as err:
        raise ImageReadError(str(err)) from None
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale any dtype to uint8: 16-bit by /257, floats in 0..1 by x255 (0..255 floats kept), bool to 0/255."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = image[np.isfinite(image)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.nan_to_num(image * scale), 0, 255).round().astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {image.dtype}")


def _check_shape(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)):
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"empty image of shape {image.shape}")
        return image
    raise ValueError(f"expected an (h, w) grey or (h, w, 3|4) BGR(A) image, got shape {image.shape}")


def to_grey(image: np.ndarray) -> np.ndarray:
    """Any supported image -> (h, w) uint8 grey (BGR/BGRA weights; alpha ignored)."""
    image = to_uint8(_check_shape(np.asarray(image)))
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(image, code)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Any supported image -> (h, w, 3) uint8 BGR (a new array, safe to draw on)."""
    image = to_uint8(_check_shape(np.asarray(image)))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


# ------------------------------------------------------------------------------------------------ classifiers


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
        if n_classes != len(FER2013_CLASSES):
            raise PredictorError(f"{path}: {n_classes} outputs; a peer model must have FER2013's 7 classes")
        self.class_names = FER2013_CLASSES
        self.metadata = {"model_name": Path(path).name, "class_names": list(FER2013_CLASSES), "feature_set": "raw"}
        self._call = compiled_call(self.model)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        x = (faces.astype(np.float32) / 255.0 - 0.5) * 2.0
        return np.asarray(self._call(x[..., None]), dtype=np.float32)


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
    (``inference.backends.open_backend``); ``onnx`` or ``keras`` insist on one. Peer models run through Keras.
    """
    path = resolve_model_path(model_path)
    if path.suffix.lower() in PEER_SUFFIXES:
        if backend == "onnx":
            raise PredictorError(f"{path}: peer models run through Keras only (drop --backend onnx)")
        return PeerClassifier(path)
    return FerModelClassifier(open_backend(path, backend))


# -------------------------------------------------------------------------------------------------- predictor


class FacePredictor:
    """Detect faces, frame (or align) them as FER2013, classify all faces of an image in one model call.

    Args:
        model_path: a ``.keras`` model saved by ``models.io.save_model`` (or a peer ``.h5``/``.hdf5``);
            None means the bundled ``models/pretrained/fer_model.keras`` (ModelNotFoundError if absent).
        detector, assume_face, detect_size, upsample, align: the fields of ``inference.faces.FacePipeline``
            (ignored when ``pipeline`` is given); the defaults are FacePipeline's.
        pipeline: how faces are found and framed (``FacePipeline.for_photos()``, ``.for_video()``, or from the
            command line with ``inference.faces.pipeline_from_args``).
        classifier: use this FaceClassifier instead of loading ``model_path`` (see ``from_model``).
        backend: ``auto`` (the ONNX twin when present, else Keras), ``onnx`` or ``keras`` (``inference.backends``).

    ``timings`` accumulates seconds spent per stage (detect, crop, classify) and ``calls`` counts predict calls.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        detector: str = "dlib",
        assume_face: bool = False,
        *,
        detect_size: int = 320,
        upsample: int = 0,
        align: bool = False,
        pipeline: FacePipeline | None = None,
        classifier: FaceClassifier | None = None,
        backend: str = "auto",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
        if pipeline is None:
            pipeline = FacePipeline(
                detector=detector, assume_face=assume_face, detect_size=detect_size, upsample=upsample, align=align
            )
        self.faces = FaceFinder(pipeline)
        self.classifier = classifier if classifier is not None else load_classifier(model_path, backend)
        name = getattr(self.classifier, "metadata", {}).get("model_name", "in-memory")
        self.model_label = f"model {model_path}" if model_path is not None else f"the {name} model"
        self.timings = {"detect": 0.0, "crop": 0.0, "classify": 0.0}
        self.calls = 0

    @classmethod
    def from_model(cls, model, metadata: dict[str, Any], **kwargs: Any) -> FacePredictor:
        """A predictor around an in-memory keras model and its metadata (tests, benchmarks)."""
        return cls(classifier=FerModelClassifier(model, metadata), **kwargs)

    @property
    def pipeline(self) -> FacePipeline:
        return self.faces.pipeline

    @property
    def detector_name(self) -> str:
        return self.pipeline.detector

    @property
    def assume_face(self) -> bool:
        return self.pipeline.assume_face

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classifier.class_names)

    @property
    def backend_name(self) -> str:
        """``onnx`` or ``keras``: the runtime that classifies the faces."""
        backend = getattr(self.classifier, "backend", None)
        return getattr(backend, "name", "keras")

    def detect(self, grey: np.ndarray) -> list[Box]:
        """Face boxes (x, y, w, h) in ``grey``'s pixels, clipped to the image, sorted left to right."""
        return [face.box for face in self.faces.detect(grey)]

    def crop_faces(self, grey: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        """(n, s, s) uint8 crops framed (or aligned) as FER2013 images, s = the model's input side."""
        size = self.classifier.input_size
        if not faces:
            return np.zeros((0, size, size), np.uint8)
        return np.stack([self.faces.crop(grey, face, size) for face in faces])

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """(n, s, s) uint8 face crops -> (n, k) float32 probabilities, one model call."""
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        probabilities = self.classifier(np.ascontiguousarray(faces, dtype=np.uint8))
        if not np.isfinite(probabilities).all():  # a model trained to NaN: never report "nan" as a confidence
            raise NonFiniteOutputError(
                f"{self.model_label} produced non-finite probabilities (NaN or inf): it is broken; retrain it or use "
                "another --model"
            )
        return probabilities

    def predict(self, image: np.ndarray) -> list[FacePrediction]:
        """Every face in ``image`` (grey or BGR/BGRA, any size and bit depth), left to right; [] when none."""
        self.calls += 1
        start = time.perf_counter()
        grey = to_grey(image)
        detected_faces = self.faces.detect(grey)
        detected = time.perf_counter()
        faces = self.crop_faces(grey, detected_faces)
        cropped = time.perf_counter()
        probabilities = self.predict_faces(faces)
        done = time.perf_counter()
        self.timings["detect"] += detected - start
        self.timings["crop"] += cropped - detected
        self.timings["classify"] += done - cropped
        return [
            make_prediction(found.box, probs, self.class_names, face)
            for found, probs, face in zip(detected_faces, probabilities, faces, strict=True)
        ]


def make_prediction(
    box: Box, probabilities: np.ndarray, class_names: Sequence[str], face: np.ndarray | None = None
) -> FacePrediction:
    """FacePrediction from a box and a (k,) probability vector."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    top = int(np.argmax(probabilities))
    return FacePrediction(
        box=tuple(int(v) for v in box),
        emotion=class_names[top],
        confidence=float(probabilities[top]),
        probabilities={name: float(p) for name, p in zip(class_names, probabilities, strict=True)},
        face=face,
    )


def iter_image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand directories (recursively, image suffixes only, sorted); files named explicitly are kept as given."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files
