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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h

# A trained model placed here (issue 5) becomes the default for --model in both scripts.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "fer_model.keras"
DETECTORS = ("dlib", "haar")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".jp2")
PEER_SUFFIXES = (".h5", ".hdf5")  # Keras 2 full models (../shared/peers): no metadata, FER2013's 7 classes
FER2013_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

# Where a detector's box sits inside a FER2013 image, measured by running each detector on 1,500 FER2013 training
# images upscaled 4x (median over the ~1,200 with exactly one detection): the image is `scale` times the box's
# width, and its centre lies `shift` box heights above the box's centre (dlib's box stops at the eyebrows, so
# FER2013 shows more forehead than chin). OpenCV's Haar box is almost the FER2013 frame itself (the dataset was
# cropped with a similar detector).
CROP_FRAMING: dict[str, tuple[float, float]] = {"dlib": (1.06, 0.052), "haar": (1.02, 0.0)}


class PredictorError(Exception):
    """A problem the user can fix (bad file, missing model, bad source); the message says what and where."""


class ImageReadError(PredictorError):
    """A file that cannot be read as an image; the message names it."""


class ModelNotFoundError(PredictorError):
    """No model file given and none bundled."""


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


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as stored: (h, w) grey or (h, w, 3|4) BGR(A), uint8 or uint16.

    Raises ImageReadError naming the file when it is missing, a directory, or not a decodable image.
    Reads through ``np.fromfile`` so non-ASCII paths work on every platform.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not an image OpenCV can decode (empty, corrupt or not an image file)")
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


# ------------------------------------------------------------------------------------------------ detection


class DlibDetector:
    """dlib's frontal HOG face detector. ``upsample`` > 0 finds smaller faces (each step ~4x slower)."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        import dlib

        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()

    def __call__(self, grey: np.ndarray) -> list[Box]:
        rects = self._detector(grey, self.upsample)
        return [(r.left(), r.top(), r.width(), r.height()) for r in rects]


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``)."""

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise PredictorError(f"cannot load OpenCV's Haar cascade {path}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def __call__(self, grey: np.ndarray) -> list[Box]:
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
        )
        return [tuple(int(v) for v in box) for box in found]


def make_detector(name: str, upsample: int = 0) -> Callable[[np.ndarray], list[Box]]:
    """``"dlib"`` or ``"haar"`` -> a callable (h, w) uint8 grey -> list of (x, y, w, h) boxes."""
    if name == "dlib":
        return DlibDetector(upsample=upsample)
    if name == "haar":
        return HaarDetector()
    raise ValueError(f"unknown detector {name!r}; choose from {list(DETECTORS)}")


def clip_box(box: Sequence[float], width: int, height: int) -> Box | None:
    """Intersect a box with the image; None when nothing is left."""
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(width, int(round(box[0] + box[2]))), min(height, int(round(box[1] + box[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def crop_face(
    grey: np.ndarray, box: Sequence[float], size: int, framing: tuple[float, float] = (1.0, 0.0)
) -> np.ndarray:
    """Square crop around ``box`` framed as FER2013 (see CROP_FRAMING), resized to (size, size) uint8.

    Parts of the square outside the image are filled by replicating the border, as a face at the frame's edge
    would otherwise be stretched.
    """
    scale, shift = framing
    x, y, w, h = (float(v) for v in box)
    side = max(1.0, scale * max(w, h))
    cx, cy = x + w / 2, y + h / 2 - shift * h
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = grey.shape
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    patch = grey[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if patch.size == 0:
        patch = np.zeros((1, 1), np.uint8)
    elif any(pad):
        patch = cv2.copyMakeBorder(patch, *pad, borderType=cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


# ------------------------------------------------------------------------------------------------ classifiers


class FaceClassifier(Protocol):
    """What FacePredictor needs from a model: class names, input side, faces (n, s, s) uint8 -> (n, k) float32."""

    class_names: tuple[str, ...]
    input_size: int

    def __call__(self, faces: np.ndarray) -> np.ndarray: ...


def _compiled_call(model) -> Callable[[Any], Any]:
    """``model(x, training=False)`` as a tf.function: a plain eager call costs several ms of Python per frame and
    ``model.predict`` far more; the traced graph is reused for every batch size after the first few.

    Models that are not Keras networks (the SVM baseline, ``models.svm.SvmModel``) are called as they are.
    """
    import keras

    if not isinstance(model, keras.Model):
        return model
    import tensorflow as tf

    return tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)


class FerModelClassifier:
    """A model of this project (``models.io`` format): grey 0..255 faces plus the metadata's feature set."""

    def __init__(self, model, metadata: dict[str, Any]):
        self.model, self.metadata = model, metadata
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
        self._call = _compiled_call(model)
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
        images = faces.astype(np.float32)[..., None]
        features = self._features(faces)
        inputs = images if features is None else [images, features]
        probabilities = np.asarray(self._call(inputs), dtype=np.float32)
        if self.temperature == 1.0:
            return probabilities
        from inference.calibration import apply_temperature

        return apply_temperature(probabilities, self.temperature)


class PeerClassifier:
    """A Keras 2 HDF5 full model such as ``../shared/peers/fer2013_mini_XCEPTION.102-0.66.hdf5``: grey faces of the
    model's input side, scaled ``x / 255`` then ``(x - 0.5) * 2``; FER2013's 7 classes in csv order."""

    def __init__(self, path: str | Path):
        import keras

        self.model = keras.models.load_model(path, compile=False)
        self.input_size = int(self.model.input_shape[1])
        n_classes = int(self.model.output_shape[-1])
        if n_classes != len(FER2013_CLASSES):
            raise PredictorError(f"{path}: {n_classes} outputs; a peer model must have FER2013's 7 classes")
        self.class_names = FER2013_CLASSES
        self.metadata = {"model_name": Path(path).name, "class_names": list(FER2013_CLASSES), "feature_set": "raw"}
        self._call = _compiled_call(self.model)

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


def load_classifier(model_path: str | Path | None = None) -> FaceClassifier:
    """A ``.keras`` model of this project (with its metadata) or a peer ``.h5``/``.hdf5`` model."""
    path = resolve_model_path(model_path)
    if path.suffix.lower() in PEER_SUFFIXES:
        return PeerClassifier(path)
    from models.io import load_model

    model, metadata = load_model(path)
    return FerModelClassifier(model, metadata)


# -------------------------------------------------------------------------------------------------- predictor


class FacePredictor:
    """Detect faces, crop them as FER2013, classify all faces of an image in one model call.

    Args:
        model_path: a ``.keras`` model saved by ``models.io.save_model`` (or a peer ``.h5``/``.hdf5``);
            None means the bundled ``models/pretrained/fer_model.keras`` (ModelNotFoundError if absent).
        detector: ``"dlib"`` (HOG, default) or ``"haar"`` (OpenCV cascade).
        assume_face: treat the whole image as one face (for inputs that are already face crops, e.g. 48x48).
        detect_size: detect on a copy whose longer side is at most this many pixels (0: full resolution);
            when the copy shows no face, the full image is searched too.
        upsample: dlib's upsampling steps (finds faces below ~80 px at ~4x the cost per step).
        classifier: use this FaceClassifier instead of loading ``model_path`` (see ``from_model``).

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
        classifier: FaceClassifier | None = None,
    ):
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; choose from {list(DETECTORS)}")
        if detect_size < 0:
            raise ValueError(f"detect_size {detect_size} must be >= 0 (0: full resolution)")
        self.classifier = classifier if classifier is not None else load_classifier(model_path)
        self.detector_name = detector
        self.assume_face = assume_face
        self.detect_size = detect_size
        self._detector = None if assume_face else make_detector(detector, upsample=upsample)
        self.timings = {"detect": 0.0, "crop": 0.0, "classify": 0.0}
        self.calls = 0

    @classmethod
    def from_model(cls, model, metadata: dict[str, Any], **kwargs: Any) -> FacePredictor:
        """A predictor around an in-memory keras model and its metadata (tests, benchmarks)."""
        return cls(classifier=FerModelClassifier(model, metadata), **kwargs)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classifier.class_names)

    def detect(self, grey: np.ndarray) -> list[Box]:
        """Face boxes (x, y, w, h) in ``grey``'s pixels, clipped to the image, sorted left to right."""
        height, width = grey.shape
        boxes: list[Sequence[float]] = []
        scale = 1.0
        if self.detect_size and max(height, width) > self.detect_size:
            scale = self.detect_size / max(height, width)
            small = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            boxes = [tuple(v / scale for v in box) for box in self._detector(small)]
        if not boxes:  # no downscaling, or the small copy showed no face (small faces vanish when downscaled)
            boxes = self._detector(grey)
        clipped = [clip_box(box, width, height) for box in boxes]
        return sorted((box for box in clipped if box is not None), key=lambda b: (b[0], b[1]))

    def crop_faces(self, grey: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """(n, s, s) uint8 crops framed as FER2013 images, s = the model's input side."""
        size = self.classifier.input_size
        if self.assume_face:
            return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)[None]
        framing = CROP_FRAMING[self.detector_name]
        if not boxes:
            return np.zeros((0, size, size), np.uint8)
        return np.stack([crop_face(grey, box, size, framing) for box in boxes])

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """(n, s, s) uint8 face crops -> (n, k) float32 probabilities, one model call."""
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self.classifier(np.ascontiguousarray(faces, dtype=np.uint8))

    def predict(self, image: np.ndarray) -> list[FacePrediction]:
        """Every face in ``image`` (grey or BGR/BGRA, any size and bit depth), left to right; [] when none."""
        self.calls += 1
        start = time.perf_counter()
        grey = to_grey(image)
        height, width = grey.shape
        boxes = [(0, 0, width, height)] if self.assume_face else self.detect(grey)
        detected = time.perf_counter()
        faces = self.crop_faces(grey, boxes)
        cropped = time.perf_counter()
        probabilities = self.predict_faces(faces)
        done = time.perf_counter()
        self.timings["detect"] += detected - start
        self.timings["crop"] += cropped - detected
        self.timings["classify"] += done - cropped
        return [
            make_prediction(box, probs, self.class_names, face)
            for box, probs, face in zip(boxes, probabilities, faces, strict=True)
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
