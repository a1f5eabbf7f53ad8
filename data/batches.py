"""Training batches: reproducible order and augmentation, features that follow the augmented pixels.

Batch ``b`` of epoch ``e`` depends only on (seed, e, b), so a resumed run sees the data order and augmentation the
uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import numpy as np

from data.splits import SplitData, model_inputs
from parameters import FEATURE_SETS, Config


def augmented_features(feature_set: str, images: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray | None:
    """The feature vectors of augmented faces: the landmarks moved with the image (``random_affine``) and the HOG
    parts recomputed from the augmented images (data.hog, vectorised), so features and pixels
    always describe the same picture."""
    from data.features import FEATURE_PARTS, assemble_features
    from data.hog import hog_features

    parts = FEATURE_PARTS[feature_set]
    if not parts:
        return None
    hog = {}
    if "hog_plain" in parts or "hog_windows" in parts:
        hog = hog_features(images, plain="hog_plain" in parts, windows="hog_windows" in parts)
    return assemble_features(feature_set, landmarks=landmarks, **hog)


def batch_generator(
    train: SplitData,
    n_classes: int,
    config: Config,
    *,
    initial_epoch: int = 0,
    teacher=None,
):
    """Yield ``(inputs, one_hot_targets)`` batches for epochs ``initial_epoch..epochs-1``, epoch after epoch.

    Batch ``b`` of epoch ``e`` depends only on (seed, e, b): the order is the permutation drawn by
    ``default_rng([seed, e])`` and the augmentation draws from ``default_rng([seed, e, b])``.
    With ``augment``, every feature set gets the geometric augmentation: landmarks follow the warp and HOG is
    recomputed from the augmented (and erased) images.
    ``teacher`` (``(images, features) -> probabilities``, see training.teacher.make_teacher): the targets become
    ``(1 - distill_weight) * targets + distill_weight * teacher(batch)`` (knowledge distillation at temperature 1).
    """
    from data.augment import mixup, random_affine, random_erasing, random_photometric

    hp, tr = config.hyperparams, config.training
    n, batch_size = len(train.labels), tr.batch_size
    steps = math.ceil(n / batch_size)
    eye = np.eye(n_classes, dtype=np.float32)
    feature_set = config.dataset.feature_set
    for epoch in range(initial_epoch, tr.epochs):
        order = np.random.default_rng([tr.seed, epoch]).permutation(n)
        for b in range(steps):
            index = np.sort(order[b * batch_size : (b + 1) * batch_size])  # sorted: faster gathers
            rng = np.random.default_rng([tr.seed, epoch, b])
            images = train.images[index].astype(np.float32)
            features = None if train.features is None else train.features[index]
            # FER+ vote distributions (cross-entropy against soft targets) or one-hot majority labels
            targets = train.soft_labels[index] if train.soft_labels is not None else eye[train.labels[index]]
            if hp.augment:
                # every non-raw feature set starts with the 68 (x, y) landmarks
                landmarks = None if features is None else features[:, : FEATURE_SETS["landmarks"]].reshape(-1, 68, 2)
                images, landmarks = random_affine(images, rng, landmarks)
                if hp.random_erasing > 0:
                    images = random_erasing(images, rng, hp.random_erasing)
                if features is not None:
                    features = augmented_features(feature_set, images, landmarks)
            clean = images  # what a teacher sees: the face before the real-photo degradations
            if hp.photometric > 0:
                images = random_photometric(images, rng, hp.photometric)
            if hp.mixup_alpha > 0:
                (images, features, clean), targets = mixup([images, features, clean], targets, rng, hp.mixup_alpha)
            if teacher is not None:
                weight = config.training.distill_weight
                targets = (1.0 - weight) * targets + weight * teacher(clean, features)
            inputs = model_inputs(images, features)
            yield (tuple(inputs) if isinstance(inputs, list) else inputs), targets  # tf.data wants tuples
