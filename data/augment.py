"""Batch augmentation in numpy (cv2 for the warps), deterministic given a ``numpy.random.Generator``.

Geometric augmentation (random shift, small rotation and scale, horizontal flip) moves the 68 landmarks with the
same affine map and, on a flip, re-indexes them (left eye <-> right eye ...). HOG cannot be moved, so training
(data.batches.batch_generator) recomputes it from the augmented images; every feature set is augmented exactly.

Landmark coordinates are (x, y) pixel indices in the 48x48 image, so a flip maps x to ``width - 1 - x``.
"""

from __future__ import annotations

import numpy as np

# Mirror partner of each of dlib's 68 points (iBUG 300-W order).
FLIP_PERMUTATION: np.ndarray = np.array(
    list(range(16, -1, -1))  # jaw 0..16
    + list(range(26, 21, -1))  # right brow 17..21 <- left brow 26..22
    + list(range(21, 16, -1))  # left brow 22..26 <- right brow 21..17
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose bottom
    + [45, 44, 43, 42, 47, 46]  # right eye 36..41 <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye 42..47 <- right eye
    + [54, 53, 52, 51, 50, 49, 48]  # outer lip top 48..54
    + [59, 58, 57, 56, 55]  # outer lip bottom 55..59
    + [64, 63, 62, 61, 60]  # inner lip top 60..64
    + [67, 66, 65],  # inner lip bottom 65..67
    dtype=np.int64,
)


def flip_images(images: np.ndarray) -> np.ndarray:
    """Mirror ``(n, h, w[, 1])`` images left-right."""
    return images[:, :, ::-1, ...].copy()


def resize_faces(faces: np.ndarray, side: int) -> np.ndarray:
    """``(n, h, w)`` faces at ``side`` x ``side`` (bilinear, dtype kept); the array itself when already that size.
    How a whole 48x48 FER2013 face reaches a model of another input side (the 64x64 peers)."""
    if faces.shape[1:3] == (side, side):
        return faces
    import cv2

    return np.stack([cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR) for face in faces])


def flip_landmarks(landmarks: np.ndarray, width: int = 48) -> np.ndarray:
    """Mirror ``(n, 68, 2)`` (x, y) landmarks of ``width``-wide images and re-index them (returns a new array)."""
    flipped = landmarks[:, FLIP_PERMUTATION].copy()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def ten_crop_views(images: np.ndarray, crop: int = 46) -> list[np.ndarray]:
    """Ten views of ``(n, h, w)`` faces for test-time augmentation: ``crop`` x ``crop`` windows at the four corners
    and the centre, each resized back to ``h`` x ``w`` (bilinear), then the mirror image of each. ``crop`` 46 of 48
    (a 4 % zoom and up to 2 pixels of shift) was chosen on PublicTest among 40, 42, 44 and 46."""
    import cv2

    n, h, w = images.shape[:3]
    if not 0 < crop <= min(h, w):
        raise ValueError(f"crop {crop} must lie in 1..{min(h, w)} for {h}x{w} faces")
    dy, dx = h - crop, w - crop
    views = []
    for top, left in ((0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)):
        window = images[:, top:top + crop, left:left + crop]
        views.append(np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in window])
                     if n else images.copy())
    return views + [flip_images(v) for v in views]


def flip_features(
    features: np.ndarray, feature_set: str, width: int = 48, flipped_images: np.ndarray | None = None
) -> np.ndarray:
    """The ``(n, d)`` feature matrix of the mirrored faces: landmarks (x0, y0, x1, y1, ...) mirrored and re-indexed,
    HOG parts recomputed from ``flipped_images`` (the mirrored ``(n, 48, 48)`` faces; needed for HOG feature sets,
    whose histograms do not follow a flip by any permutation)."""
    from data.features import FEATURE_PARTS, assemble_features
    from parameters import FEATURE_SETS

    parts = FEATURE_PARTS[feature_set]
    if not parts:
        return features
    landmarks = None
    if "landmarks" in parts:
        landmarks = flip_landmarks(np.asarray(features)[:, : FEATURE_SETS["landmarks"]].reshape(-1, 68, 2), width)
    hog = {}
    if "hog_plain" in parts or "hog_windows" in parts:
        if flipped_images is None:
            raise ValueError(f"mirroring {feature_set!r} features needs the mirrored images (HOG is recomputed)")
        from data.hog import hog_features

        hog = hog_features(flipped_images, plain="hog_plain" in parts, windows="hog_windows" in parts)
    return assemble_features(feature_set, landmarks=landmarks, **hog).astype(np.asarray(features).dtype, copy=False)


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    *,
    max_shift: float = 4.0,
    max_rotation: float = 10.0,
    max_scale: float = 0.05,
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random shift (pixels), rotation (degrees), scale and horizontal flip of ``(n, h, w)`` float32 images.

    ``landmarks`` ``(n, 68, 2)`` follow the same map. Returns new arrays; borders are reflected.
    """
    import cv2

    n, height, width = images.shape[:3]
    out = np.empty_like(images)
    moved = None if landmarks is None else np.empty_like(landmarks)
    center = ((width - 1) / 2.0, (height - 1) / 2.0)
    angles = rng.uniform(-max_rotation, max_rotation, n)
    scales = 1.0 + rng.uniform(-max_scale, max_scale, n)
    shifts = rng.uniform(-max_shift, max_shift, (n, 2))
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    for i in range(n):
        matrix = cv2.getRotationMatrix2D(center, float(angles[i]), float(scales[i]))
        matrix[:, 2] += shifts[i]
        if flips[i]:  # flip first (x -> w - 1 - x), then rotate/scale/shift
            matrix = matrix @ np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        out[i] = cv2.warpAffine(
            images[i], matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        if moved is not None:
            points = landmarks[i] @ matrix[:, :2].T + matrix[:, 2]
            moved[i] = points[FLIP_PERMUTATION] if flips[i] else points
    return out, moved


def random_erasing(
    images: np.ndarray, rng: np.random.Generator, probability: float, *, area: tuple[float, float] = (0.02, 0.2)
) -> np.ndarray:
    """Erase one random rectangle (uniform noise 0..255) per image with ``probability`` (Zhong et al. 2017).

    ``images`` ``(n, h, w)`` float32 is modified in place and returned.
    """
    n, height, width = images.shape[:3]
    for i in np.flatnonzero(rng.random(n) < probability):
        for _ in range(10):  # retry until the rectangle fits
            target = rng.uniform(*area) * height * width
            aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
            h, w = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
            if 0 < h < height and 0 < w < width:
                y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                images[i, y : y + h, x : x + w] = rng.uniform(0, 255, (h, w))
                break
    return images


def mixup(
    arrays: list[np.ndarray | None], labels: np.ndarray, rng: np.random.Generator, alpha: float
) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Mix each sample with a random partner of the batch (Zhang et al. 2018), one lambda ~ Beta(alpha, alpha)
    per batch; ``arrays`` are the inputs (None entries pass through), ``labels`` one-hot/soft ``(n, k)``."""
    lam = float(rng.beta(alpha, alpha))
    partner = rng.permutation(len(labels))
    mixed = [None if a is None else (lam * a + (1 - lam) * a[partner]).astype(a.dtype) for a in arrays]
    return mixed, (lam * labels + (1 - lam) * labels[partner]).astype(labels.dtype)


def random_box_jitter(
    images: np.ndarray,
    rng: np.random.Generator,
    probability: float,
    *,
    max_shift: float = 0.08,
    scale_range: tuple[float, float] = (0.85, 1.2),
) -> np.ndarray:
    """Reframe each of ``(n, h, w)`` float32 images with ``probability`` as a face detector's box would: the crop
    side is ``scale`` times the image's (``scale_range``; above 1 zooms out, the border reflected) and its centre moves
    by up to ``max_shift`` of the side in x and y. FER2013's faces are framed alike; detector boxes on photos are not.
    Returns a new array. Every image draws the same numbers whether it is reframed or not (deterministic batches)."""
    import cv2

    n, height, width = images.shape[:3]
    chosen = rng.random(n) < probability
    scales = rng.uniform(*scale_range, n)
    shifts = rng.uniform(-max_shift, max_shift, (n, 2)) * np.array([width, height])
    out = images.copy()
    center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    for i in np.flatnonzero(chosen):
        # the map from output pixels to the crop: zoom by 1/scale about the centre, then shift
        zoom = 1.0 / scales[i]
        matrix = np.array([[zoom, 0.0, 0.0], [0.0, zoom, 0.0]])
        matrix[:, 2] = center - zoom * (center + shifts[i])
        out[i] = cv2.warpAffine(
            images[i], matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
    return out


def random_photometric(images: np.ndarray, rng: np.random.Generator, probability: float) -> np.ndarray:
    """Degrade ``(n, h, w)`` float32 grey images (0..255) the way camera photos differ from FER2013's faces.

    Each transform hits each image independently with ``probability``, in this order: detector-box jitter
    (:func:`random_box_jitter`), gamma (0.5..2), contrast (x0.5..1.5 about the mean) and brightness (+-40 grey levels),
    histogram equalisation (with probability / 4: the face as a contrast-normalising pipeline would give it), blur
    (Gaussian sigma 0.5..1.5, or down to 12..32 pixels and back up: a small, far face), Gaussian sensor noise
    (sigma 2..12) and JPEG re-encoding (quality 15..80). Returns a new float32 array clipped to 0..255. Every image
    draws the same numbers whether it is transformed or not, so a batch depends only on ``rng``'s seed.
    """
    import cv2

    n, height, width = images.shape[:3]
    out = random_box_jitter(images, rng, probability)
    hit = rng.random((n, 6)) < np.array([1, 1, 0.25, 1, 1, 1]) * probability
    gammas = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
    contrasts = rng.uniform(0.5, 1.5, n)
    brightness = rng.uniform(-40.0, 40.0, n)
    down_up = rng.random(n) < 0.5
    sigmas = rng.uniform(0.5, 1.5, n)
    small_sides = rng.integers(12, 33, n)
    noise_sigmas = rng.uniform(2.0, 12.0, n)
    qualities = rng.integers(15, 81, n)
    noise = rng.standard_normal((n, height, width), dtype=np.float32)
    for i in np.flatnonzero(hit.any(axis=1)):
        face = out[i]
        if hit[i, 0]:
            face = 255.0 * (np.clip(face, 0.0, 255.0) / 255.0) ** gammas[i]
        if hit[i, 1]:
            face = (face - face.mean()) * contrasts[i] + face.mean() + brightness[i]
        if hit[i, 2]:
            face = cv2.equalizeHist(np.clip(face, 0, 255).round().astype(np.uint8)).astype(np.float32)
        if hit[i, 3]:
            if down_up[i]:
                side = int(small_sides[i])
                small = cv2.resize(face.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
                face = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
            else:
                face = cv2.GaussianBlur(face.astype(np.float32), (0, 0), float(sigmas[i]))
        if hit[i, 4]:
            face = face + noise_sigmas[i] * noise[i]
        if hit[i, 5]:
            encoded = cv2.imencode(
                ".jpg", np.clip(face, 0, 255).round().astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, int(qualities[i])]
            )[1]
            face = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).astype(np.float32)
        out[i] = np.clip(face, 0.0, 255.0)
    return out
