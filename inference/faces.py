"""Finding and framing faces: detection, cropping and alignment, the first half of the face pipeline.

grey (h, w) uint8 image
  -> ``detect_faces``: the detector's stages, each on a copy downscaled to its own size, until one finds a face;
     every box is tagged with the detector that found it (each detector frames a face differently)
  -> ``frame_face``: the square a FER2013 image would show around that face (``CROP_FRAMING``), or, with
     ``align``, the similarity transform that puts the face's eyes and mouth (dlib's 68 landmarks) where they sit on
     the mean FER2013 face (``FER2013_ANCHORS``): upright, eye line horizontal, scale normalised
  -> ``preprocess_face``: the (s, s) uint8 crop a model sees. The same function frames FER2013's own faces for
     conversion (``align_fer2013_faces``), so photos and training data are framed alike.

Which detector when (``DETECTOR_HELP``): ``dlib`` (HOG) is fast (~3 ms at 320 px) and right for video of a face
that looks at the camera; ``dlib+cnn`` (the photo default) adds dlib's CNN detector on the images where HOG finds
nothing (turned, dark, blurred faces): as fast as HOG when HOG succeeds, far slower (the CNN: ~1.8 s on a full
720x576 frame on 2 cores, about 0.44x that on the default 480 px copy) when it does not.

The defaults of both uses live in one place, ``FacePipeline.for_photos()`` and ``FacePipeline.for_video()``, and
``add_face_arguments`` defines the face flags once for predict.py, predict_from_video.py and folder evaluation.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config_fields import non_negative_int
from inference.detectors import (  # noqa: F401  (re-exported: the detectors were defined here before)
    DETECTOR_HELP,
    DETECTOR_STAGES,
    Box,
    CnnDetector,
    DlibDetector,
    FaceDetectorError,
    HaarDetector,
    Stage,
    cnn_model_path,
    make_detector,
)
from parameters import DETECTORS

# Where a detector's box sits inside the crop: the crop is `scale` times the box's width, and its centre lies `shift`
# box heights above the box's centre (dlib's box stops at the eyebrows, so FER2013 shows more forehead than chin).
# The dlib and Haar values are the project's (issue 4). experiments/fer2013_framing.py (500 FER2013 Training faces
# upscaled 4x, median over those with one detection) measures dlib (1.28, 0.053), Haar (1.20, -0.009) and the CNN
# (1.164, 0.030): the CNN's box is 1.28 / 1.164 = 1.10x dlib's for the same face, so its framing here is dlib's
# scaled by that ratio, to crop the same square as dlib does. (The measured 1.28 says the box crops are tighter than
# FER2013's own framing; the aligned crop, FER2013_ANCHORS, follows the measurement.)
CROP_FRAMING: dict[str, tuple[float, float]] = {
    "dlib": (1.06, 0.052),
    "haar": (1.02, 0.0),
    "cnn": (round(1.06 * 1.164 / 1.28, 3), 0.030),
}

# Mean positions, in 48x48 FER2013 pixels, of the left eye's centre (landmarks 36-41, the eye on the image's left),
# the right eye's centre (42-47) and the mouth's centre (48-67) on FER2013 Training faces, measured with dlib's
# 68-point model on faces found by the HOG detector at 4x (experiments/fer2013_framing.py). Alignment maps a photo's
# face onto these three points, so an aligned face is framed like the average FER2013 face, but upright.
# Measured (346 faces): left eye (15.12, 18.49), right eye (32.23, 18.40), mouth (23.80, 37.19), std ~3 px; the eyes'
# height is averaged so the target eye line is exactly horizontal.
FER2013_ANCHORS = np.array([[15.12, 18.45], [32.23, 18.45], [23.80, 37.19]], dtype=np.float64)


@dataclass(frozen=True)
class FacePipeline:
    """How faces are found and framed. ``for_photos()`` and ``for_video()`` hold the two sets of defaults."""

    detector: str = "dlib"  # one of DETECTORS
    detect_size: int = 320  # HOG/Haar run on a copy at most this many px on its longer side (0: full image)
    cnn_size: int = 480  # the CNN detector's copy (its cost grows with the pixel count)
    upsample: int = 0  # dlib HOG upsampling steps (finds faces under ~80 px at ~4x the cost per step)
    align: bool = False  # crop along the landmarks (upright, FER2013's eye/mouth positions) instead of the box
    assume_face: bool = False  # the whole image is one face: no detection

    def __post_init__(self) -> None:
        if self.detector not in DETECTOR_STAGES:
            raise ValueError(f"unknown detector {self.detector!r}; choose from {list(DETECTORS)}")
        for name in ("detect_size", "cnn_size", "upsample"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} must be >= 0")

    @classmethod
    def for_photos(cls, **overrides: Any) -> FacePipeline:
        """predict.py and folder evaluation: find every face a photo shows, speed second."""
        return cls(**{"detector": "dlib+cnn", "detect_size": 1024, "align": True, **overrides})

    @classmethod
    def for_video(cls, **overrides: Any) -> FacePipeline:
        """predict_from_video.py: >= 60 fps end to end on a 596x336 video, so HOG on a small copy only (the
        detector named by ``parameters.VideoPredictor.face_detector``)."""
        from parameters import VideoPredictor

        return cls(**{"detector": VideoPredictor().face_detector, "detect_size": 320, **overrides})

    def stages(self) -> tuple[Stage, ...]:
        """The detector's stages with their sizes resolved (0: full image), duplicates removed."""
        resolved: list[Stage] = []
        for stage in DETECTOR_STAGES[self.detector]:
            default = self.cnn_size if stage.detector == "cnn" else self.detect_size
            size = 0 if stage.size < 0 else (stage.size or default)
            if stage.size < 0 and not self.detect_size:
                continue  # the first stage already ran at full resolution
            resolved.append(Stage(stage.detector, size))
        return tuple(resolved)


@dataclass(frozen=True)
class DetectedFace:
    """A face box (x, y, w, h) in input pixels and the detector that found it."""

    box: Box
    detector: str


class FaceFinder:
    """Runs a FacePipeline's detection and framing; the loaded models live here (one instance per process)."""

    def __init__(self, pipeline: FacePipeline):
        self.pipeline = pipeline
        self.stages = () if pipeline.assume_face else pipeline.stages()
        self._detectors: dict[str, Callable[[np.ndarray], list[Box]]] = {}
        for stage in self.stages:  # load now, so a missing model fails before the first image
            if stage.detector not in self._detectors:
                self._detectors[stage.detector] = make_detector(stage.detector, upsample=pipeline.upsample)
        self._landmarks = load_shape_predictor() if pipeline.align else None

    def detect(self, grey: np.ndarray) -> list[DetectedFace]:
        """Faces in ``grey`` (h, w) uint8, clipped to the image, sorted left to right; [] when none."""
        height, width = grey.shape
        if self.pipeline.assume_face:
            return [DetectedFace((0, 0, width, height), "image")]
        for stage in self.stages:
            scale = 1.0
            image = grey
            if stage.size and max(height, width) > stage.size:
                scale = stage.size / max(height, width)
                image = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            found = self._detectors[stage.detector](image)
            boxes = [clip_box([v / scale for v in box], width, height) for box in found]
            faces = [DetectedFace(box, stage.detector) for box in boxes if box is not None]
            if faces:
                return sorted(faces, key=lambda f: (f.box[0], f.box[1]))
        return []

    def landmarks(self, grey: np.ndarray, face: DetectedFace) -> np.ndarray:
        """(68, 2) float32 landmarks of ``face``: dlib's shape predictor on the HOG-like box of its FER2013 frame."""
        import dlib

        if face.detector == "image":
            rect = whole_image_rect(grey.shape)
        else:
            x, y, w, h = dlib_equivalent_box(face.box, face.detector)
            rect = dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        shape = self._landmarks(grey, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def crop(self, grey: np.ndarray, face: DetectedFace, size: int, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(size, size) uint8 crop of one face as the model should see it. With ``align``, ``landmarks`` (68, 2)
        are those of ``face`` when already computed (several crop sizes of one face), else computed here."""
        if face.detector == "image" and not self.pipeline.align:  # --assume-face: the image is the face, squashed
            return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        if self.pipeline.align and landmarks is None:
            landmarks = self.landmarks(grey, face)
        elif not self.pipeline.align:
            landmarks = None
        framing = CROP_FRAMING.get(face.detector, (1.0, 0.0))
        return preprocess_face(grey, face.box, size, framing=framing, landmarks=landmarks)


def load_shape_predictor():
    """dlib's 68-point shape predictor (the project's landmark model), FaceDetectorError when it cannot load."""
    import dlib

    from data.landmarks import default_shape_predictor_path

    try:
        return dlib.shape_predictor(str(default_shape_predictor_path()))
    except (FileNotFoundError, RuntimeError) as err:
        raise FaceDetectorError(f"--align needs dlib's 68-point landmark model: {err}") from err


def whole_image_rect(shape: tuple[int, ...]):
    """The rectangle the landmark extractor uses on a whole face image: FER2013's (1, 1, 47, 47), scaled."""
    import dlib

    from data.landmarks import FACE_RECT

    height, width = shape[:2]
    left, top, right, bottom = FACE_RECT
    return dlib.rectangle(round(left * width / 48), round(top * height / 48), round(right * width / 48),
                          round(bottom * height / 48))


def clip_box(box: Sequence[float], width: int, height: int) -> Box | None:
    """Intersect a box with the image; None when nothing is left."""
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(width, int(round(box[0] + box[2]))), min(height, int(round(box[1] + box[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def fer2013_frame(box: Sequence[float], framing: tuple[float, float]) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square a FER2013 image would show around a detector's ``box``."""
    scale, shift = framing
    x, y, w, h = (float(v) for v in box)
    return x + w / 2, y + h / 2 - shift * h, max(1.0, scale * max(w, h))


def dlib_equivalent_box(box: Sequence[float], detector: str) -> tuple[float, float, float, float]:
    """The box dlib's HOG detector would give for the face another detector boxed (same FER2013 frame): the landmark
    model was trained on HOG boxes."""
    cx, cy, side = fer2013_frame(box, CROP_FRAMING.get(detector, (1.0, 0.0)))
    scale, shift = CROP_FRAMING["dlib"]
    w = side / scale
    return cx - w / 2, cy + shift * w - w / 2, w, w


# ------------------------------------------------------------------------------------------------- cropping


def crop_face(
    grey: np.ndarray, box: Sequence[float], size: int, framing: tuple[float, float] = (1.0, 0.0)
) -> np.ndarray:
    """Square crop around ``box`` framed as FER2013 (see CROP_FRAMING), resized to (size, size) uint8.

    Parts of the square outside the image are filled by replicating the border, as a face at the frame's edge
    would otherwise be stretched.
    """
    cx, cy, side = fer2013_frame(box, framing)
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


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) dlib landmarks -> (3, 2): centre of the image-left eye, of the image-right eye, of the mouth."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[48:68].mean(0)])


def similarity_transform(src: np.ndarray, dst: np.ndarray, *, angle_from: tuple[int, int] | None = None) -> np.ndarray:
    """The 2x3 rotation + uniform scale + translation that maps points ``src`` (n, 2) onto ``dst`` (n, 2) with the
    least squared error (no reflection). With ``angle_from=(i, j)`` the rotation is fixed so that the line from
    point i to point j keeps the direction it has in ``dst`` (the eye line stays exactly horizontal); scale and
    translation are then fitted to all points."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    a, b = src - src_mean, dst - dst_mean
    norm = (a**2).sum()
    if norm <= 0:
        raise ValueError("degenerate landmarks: all anchor points coincide")
    if angle_from is None:  # closed-form 2-D least squares: [c -s; s c] from dot and cross sums
        c = (a * b).sum() / norm
        s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / norm
        linear = np.array([[c, -s], [s, c]])
    else:
        i, j = angle_from
        u, v = src[j] - src[i], dst[j] - dst[i]
        angle = np.arctan2(v[1], v[0]) - np.arctan2(u[1], u[0])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        linear = rotation * ((a @ rotation.T) * b).sum() / norm
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def align_face(grey: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8 crop of ``grey`` rotated and scaled so the eyes and mouth land on FER2013_ANCHORS.

    A face much larger than ``size`` is first shrunk with area averaging (``warpAffine`` alone would alias);
    outside the image the border is replicated, as in ``crop_face``.
    """
    matrix = similarity_transform(anchor_points(landmarks), FER2013_ANCHORS * (size / 48.0), angle_from=(0, 1))
    linear, offset = matrix[:, :2], matrix[:, 2]
    inverse = np.linalg.inv(linear)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    source = (corners - offset) @ inverse.T
    x0, y0 = np.floor(source.min(0)).astype(int) - 2
    x1, y1 = np.ceil(source.max(0)).astype(int) + 2
    height, width = grey.shape
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    patch = grey[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if patch.size == 0:
        return np.zeros((size, size), np.uint8)
    if any(pad):
        patch = cv2.copyMakeBorder(patch, *pad, borderType=cv2.BORDER_REPLICATE)
    origin = np.array([x0, y0], np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    if scale < 0.5:  # shrink first: a patch point p maps to p * shrink in the small copy
        shrink = min(1.0, 2.0 * scale)
        small = (max(1, round(patch.shape[1] * shrink)), max(1, round(patch.shape[0] * shrink)))
        shrink_x, shrink_y = small[0] / patch.shape[1], small[1] / patch.shape[0]
        patch = cv2.resize(patch, small, interpolation=cv2.INTER_AREA)
        unshrink = np.diag([1 / shrink_x, 1 / shrink_y])
    else:
        unshrink = np.eye(2)
    # output = linear @ (unshrink @ q + origin) + offset, for q a point of the (shrunk) patch
    warp = np.hstack([linear @ unshrink, (linear @ origin + offset)[:, None]])
    return cv2.warpAffine(patch, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def preprocess_face(
    grey: np.ndarray,
    box: Sequence[float],
    size: int,
    *,
    framing: tuple[float, float] = (1.0, 0.0),
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """THE crop of one face, for inference and for conversion alike: (size, size) uint8.

    With ``landmarks`` (68, 2) the face is aligned (``align_face``); without, the box is framed as FER2013
    (``crop_face`` with the detector's ``framing``).
    """
    if landmarks is not None:
        return align_face(grey, landmarks, size)
    return crop_face(grey, box, size, framing)


def align_fer2013_faces(images: np.ndarray, extractor=None, size: int = 48) -> np.ndarray:
    """Conversion side: FER2013 faces (n, 48, 48) uint8 -> (n, size, size) uint8 aligned by ``preprocess_face``,
    landmarks from ``data.landmarks.LandmarkExtractor`` on the whole face (as at inference with --assume-face)."""
    from data.landmarks import LandmarkExtractor, as_uint8_faces

    images = as_uint8_faces(images)
    extractor = extractor or LandmarkExtractor()
    return np.stack(
        [
            preprocess_face(image, (0, 0, image.shape[1], image.shape[0]), size, landmarks=extractor.extract_one(image))
            for image in images
        ]
    ) if len(images) else np.zeros((0, size, size), np.uint8)


# --------------------------------------------------------------------------------------------- command line


def add_face_arguments(parser: argparse.ArgumentParser, defaults: FacePipeline, *, model: bool = True) -> None:
    """The face flags, defined once: ``--model --detector --assume-face --detect-size --cnn-size --upsample
    --align``; their defaults come from ``defaults`` (``FacePipeline.for_photos()`` or ``.for_video()``)."""
    group = parser.add_argument_group("face pipeline")
    if model:
        group.add_argument(
            "--model",
            type=Path,
            help="model saved by train.py (.keras; its .onnx twin is used when present), an .onnx export, or a peer "
            ".hdf5; default: the bundled model",
        )
    group.add_argument("--detector", choices=DETECTORS, default=defaults.detector,
                       help=f"face detector (default {defaults.detector}). {DETECTOR_HELP}")
    group.add_argument("--assume-face", action=argparse.BooleanOptionalAction, default=defaults.assume_face,
                       help="treat each whole image as one face, no detection (for face crops such as FER2013's)")
    group.add_argument("--detect-size", type=non_negative_int, default=defaults.detect_size, metavar="PX",
                       help="HOG/Haar run on a copy at most PX on its longer side, then on the full image if it "
                            "showed no face (0: full image only; default %(default)s)")
    group.add_argument("--cnn-size", type=non_negative_int, default=defaults.cnn_size, metavar="PX",
                       help="the CNN detector's copy, at most PX on its longer side; its time grows with PX squared "
                            "(0: full image; default %(default)s)")
    group.add_argument("--upsample", type=non_negative_int, default=defaults.upsample,
                       help="dlib HOG upsampling steps, for faces under ~80 px (~4x slower per step; default "
                            "%(default)s)")
    group.add_argument("--align", action=argparse.BooleanOptionalAction, default=None,
                       help="crop each face upright along its landmarks, eyes and mouth where FER2013 has them "
                            f"(default {'on' if defaults.align else 'off'}; off with --assume-face, whose images "
                            "are taken as they are framed, unless --align is given)")
    parser.set_defaults(face_pipeline_defaults=defaults)


def pipeline_from_args(args: argparse.Namespace) -> FacePipeline:
    """The FacePipeline the face flags of ``add_face_arguments`` describe."""
    align = args.align
    if align is None:  # not given: the default, except for --assume-face images (already framed as FER2013)
        align = getattr(args, "face_pipeline_defaults", FacePipeline()).align and not args.assume_face
    return FacePipeline(
        detector=args.detector,
        detect_size=args.detect_size,
        cnn_size=args.cnn_size,
        upsample=args.upsample,
        align=align,
        assume_face=args.assume_face,
    )
