"""A cap on decoded image size, checked from the file's header before any pixel is decoded.

A 425 KB PNG can declare 20000 x 20000 pixels: decoding it takes ~30 s and ~4 GB. :func:`check_image_pixels`
reads only the header (PIL's lazy ``Image.open`` parses it without decoding; PNG, JPEG, BMP, TIFF, WebP, PNM, GIF
and more) and refuses an image above ``max_pixels``. Formats PIL does not know are checked after decoding instead
(:func:`check_decoded_pixels`), which bounds what the rest of the pipeline sees.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: above any camera photo users bring (a 48 MP phone shot is 8000 x 6000)


def _too_large(path: Path, width: int | None, height: int | None, max_pixels: int, declared: int = 0) -> str:
    if width and height:
        size = f"{width} x {height} = {width * height / 1e6:.1f} MP"
    else:
        size = f"{declared / 1e6:.1f} MP" if declared else "the size it declares"
    return (
        f"{path}: image of {size} is over the {max_pixels / 1e6:g} MP limit "
        "(pass --max-pixels to raise it, or downscale the image)"
    )


def header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header, or None when PIL cannot identify the file. Decodes no pixels.

    Raises ValueError when the header declares more pixels than PIL's own bomb limit (twice
    ``PIL.Image.MAX_IMAGE_PIXELS``, ~179 MP), since PIL then refuses to report the size.
    """
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning, "Corrupt EXIF data" ...: we decide below
        try:
            with Image.open(path) as image:
                return image.size
        except Image.DecompressionBombError as err:
            raise ValueError(str(err)) from None
        except UnidentifiedImageError:
            return None  # not a format PIL knows: OpenCV decides, and the size is checked after decoding
        except Exception:  # a header PIL's parser chokes on (struct.error, SyntaxError, OSError ...): same
            return None


def check_image_pixels(path: Path, max_pixels: int | None) -> None:
    """ValueError naming ``path`` when its header declares more than ``max_pixels`` pixels (None: no cap)."""
    if max_pixels is None:
        return
    from PIL import Image

    try:
        size = header_size(path)
    except ValueError as err:  # PIL's bomb limit; its message holds the declared pixel count
        if max_pixels < 2 * (Image.MAX_IMAGE_PIXELS or 0):
            found = re.search(r"\((\d+) pixels\)", str(err))
            raise ValueError(_too_large(path, None, None, max_pixels, int(found.group(1)) if found else 0)) from None
        return  # the user allowed more than PIL reports on: leave it to the decoder and the check after it
    if size is not None and size[0] * size[1] > max_pixels:
        raise ValueError(_too_large(path, size[0], size[1], max_pixels))


def check_decoded_pixels(path: Path, shape: tuple[int, ...], max_pixels: int | None) -> None:
    """The same cap on an already decoded image of ``shape`` (h, w[, c]), for formats without a readable header."""
    if max_pixels is not None and shape[0] * shape[1] > max_pixels:
        raise ValueError(_too_large(path, shape[1], shape[0], max_pixels))
