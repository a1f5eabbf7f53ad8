"""Knowledge distillation: saved models as one teacher whose probabilities are mixed into the training targets
(``data.batches.batch_generator(teacher=...)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.splits import model_inputs
from parameters import Config
from training.run import TrainingError


def make_teacher(paths: tuple[str, ...] | str, config: Config, class_names: list[str]):
    """Load the saved models ``paths`` (``Training.teacher``; a comma-separated string also works) as one teacher
    ``(images, features) -> (n, k) float32``: the mean of their probabilities, each averaged with the mirror
    image's (landmarks mirrored, HOG recomputed), or with ``Training.teacher_tta == "ten-crop"`` over the ten views
    of ``data.augment.ten_crop_views``.
    A teacher sees the student's feature set, or only the pixels when it is a ``raw`` model (so a pixel model can
    teach a landmark/HOG model). A published peer (``.h5``/``.hdf5``, ``inference.classifiers.PeerClassifier``: its
    own input side and scaling) sees the pixels resized to its input side; it must have FER2013's 7 classes.
    TrainingError when a teacher cannot be loaded or does not fit."""
    from data.augment import flip_features, flip_images, ten_crop_views
    from inference.backends import compiled_call
    from inference.classifiers import is_peer_file
    from models.io import load_model

    fs = config.dataset.feature_set
    ten_crop = config.training.teacher_tta == "ten-crop"
    teachers = []
    paths = paths.split(",") if isinstance(paths, str) else paths
    for path in [p.strip() for p in paths if p.strip()]:
        if is_peer_file(path):
            teachers.append((peer_teacher(path, class_names), "raw"))
            continue
        try:
            model, meta = load_model(path)
        except (OSError, ValueError) as err:
            raise TrainingError(f"--teacher {path}: {err}") from None
        if not hasattr(model, "layers"):
            raise TrainingError(f"--teacher {path}: not a Keras model")
        theirs = list(meta.get("class_names") or [])
        if theirs != class_names:
            raise TrainingError(f"--teacher {path}: it has classes {theirs}, not {class_names}")
        if meta.get("feature_set") not in ("raw", fs):
            raise TrainingError(f"--teacher {path}: it has feature_set {meta.get('feature_set')}, not raw or {fs}")
        if ten_crop and meta.get("feature_set") != "raw":
            raise TrainingError(f"--teacher {path}: --teacher-tta ten-crop needs a raw-pixel teacher, not "
                                f"feature_set {meta.get('feature_set')} (use --teacher-tta flip)")
        teachers.append((compiled_call(model), meta["feature_set"]))
    if not teachers:
        raise TrainingError("--teacher: no model path given")

    def teacher(images: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        outputs = []
        for function, teacher_fs in teachers:
            if ten_crop:
                outputs.extend(np.asarray(function(model_inputs(view, None))) for view in ten_crop_views(images))
                continue
            feats = None if teacher_fs == "raw" else features
            outputs.append(np.asarray(function(model_inputs(images, feats))))
            flipped = flip_images(images)
            mirrored = None if feats is None else flip_features(feats, teacher_fs, images.shape[2], flipped)
            outputs.append(np.asarray(function(model_inputs(flipped, mirrored))))
        return np.mean(outputs, axis=0, dtype=np.float32)

    return teacher


def peer_teacher(path: str, class_names: list[str]):
    """A published peer model (``../shared/peers``) as a teacher function: ``(n, 48, 48, 1)`` float32 grey levels
    0..255 -> ``(n, 7)`` probabilities, the faces resized (bilinear) to the peer's input side first."""
    from data.augment import resize_faces
    from inference.classifiers import PeerClassifier
    from inference.images import PredictorError

    if not Path(path).is_file():
        raise TrainingError(f"--teacher {path}: no such file")
    try:
        peer = PeerClassifier(path)
    except PredictorError as err:
        raise TrainingError(f"--teacher {err}") from None
    if list(peer.class_names) != list(class_names):
        raise TrainingError(f"--teacher {path}: a peer model has FER2013's 7 classes, not {class_names}")
    side = peer.input_size

    def function(x) -> np.ndarray:
        return peer(resize_faces(np.asarray(x, dtype=np.float32)[..., 0], side))

    return function
