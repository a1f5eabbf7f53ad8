"""Image files and arrays in, grey or BGR uint8 out: what every script reads before it looks for faces.

Arrays follow OpenCV's conventions: colour images are BGR(A); 16-bit and float images are scaled to 8 bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from errors import UserError
from inference.image_limits import DEFAULT_MAX_PIXELS, check_decoded_pixels, check_image_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".jp2")


class PredictorError(UserError):
    """A problem the user can fix (bad file, missing model, bad source); the message says what and where."""


class ImageReadError(PredictorError):
    """A file that cannot be read as an image; the message names it."""


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





def iter_image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand directories (recursively, image suffixes only, sorted); files named explicitly are kept as given."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files
