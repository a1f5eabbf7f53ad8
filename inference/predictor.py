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
from typing import Any

import numpy as np

from inference.backends import BACKENDS
from inference.classifiers import FaceClassifier, FerModelClassifier, PredictorError, load_classifier, with_tta
from inference.faces import Box, DetectedFace, FaceFinder, FacePipeline
from inference.images import to_grey


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
        backend: ``auto`` (the ONNX twin when present, else Keras), ``onnx``, ``keras`` or ``int8``
            (``inference.backends``).
        tta: ``none`` (or None), ``flip`` or ``ten-crop``: test-time augmentation of each face
            (``inference.classifiers.TTAClassifier``).

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
        tta: str | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
        if pipeline is None:
            pipeline = FacePipeline(
                detector=detector, assume_face=assume_face, detect_size=detect_size, upsample=upsample, align=align
            )
        self.faces = FaceFinder(pipeline)
        self.classifier = with_tta(classifier if classifier is not None else load_classifier(model_path, backend), tta)
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

    @property
    def model_file(self) -> str | None:
        """The name of the file the runtime runs (``fer_model.onnx``, ``fer_model.int8.onnx``...), None in memory."""
        path = getattr(getattr(self.classifier, "backend", None), "path", None)
        return None if path is None else Path(path).name

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
