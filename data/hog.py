"""Histogram-of-oriented-gradients features for 48x48 faces, computed for a whole batch at once.

Two feature kinds, with the 2016 repository's ``skimage.feature.hog`` settings (8 orientations, 1x1-cell blocks)
and current scikit-image's L2-Hys block normalisation. (The 2016 repository ran scikit-image 0.12, whose ``hog``
normalised every block by ``block / sqrt(block.sum() ** 2 + 1e-5)``, an L1 norm; gradients, orientation bins and
cell means are otherwise the same; L1 stayed the default until scikit-image 0.15.)

* ``hog_plain``: one HOG over the whole face with 16x16 cells -> 3 x 3 cells x 8 = 72 values.
* ``hog_windows``: a 24x24 window slid every 6 px in x and y over the 48x48 face (8 x 8 = 64 windows), each
  window's own HOG with 8x8 cells. Windows cut by the border keep only their whole cells (24, 18, 12, 6 px ->
  3, 2, 1, 0 cells) -> 18 x 18 cells x 8 = 2,592 values. Current scikit-image raises on windows smaller than one
  cell; they contribute nothing.

``hog_windows_reference`` is that definition, a loop of ``skimage.feature.hog`` calls per window. ``hog_windows``
gives the same numbers (within 1e-6) without the loop: each window computes its gradients on its own pixels, so
a pixel's gradient depends only on whether it sits on the window's border row and/or column. We compute the
three possible gradient variants once per image (interior, border row, border column; a border corner has no
gradient), bin their magnitudes by orientation exactly as scikit-image does, and sum them into every window cell
with two small matrix products.
"""

from __future__ import annotations

import numpy as np

IMAGE_SIZE = 48
ORIENTATIONS = 8
PLAIN_CELL = 16
WINDOW_SIZE = 24
WINDOW_STEP = 6
WINDOW_CELL = 8
PLAIN_DIM = (IMAGE_SIZE // PLAIN_CELL) ** 2 * ORIENTATIONS  # 72
_EPS = 1e-5  # scikit-image's block-normalisation epsilon
_CHUNK = 32  # images per vectorised batch: keeps the (chunk, 48, 8, 48) float64 temporaries in cache


def _window_cells() -> list[tuple[int, int, bool, bool]]:
    """Cells of the sliding windows along one axis, in output order.

    Returns ``(start, window_start, first_in_window, last_pixel_on_window_border)`` per cell, where
    ``first_in_window`` means the cell's first pixel is the window's first row/column (zero gradient there) and
    ``last_pixel_on_window_border`` means the cell's last pixel is the window's last row/column.
    """
    cells = []
    for start in range(0, IMAGE_SIZE, WINDOW_STEP):
        length = min(WINDOW_SIZE, IMAGE_SIZE - start)
        n_cells = length // WINDOW_CELL
        for k in range(n_cells):
            first = start + k * WINDOW_CELL
            last_on_border = first + WINDOW_CELL == start + length
            cells.append((first, start, k == 0, last_on_border))
    return cells


def _selection_matrices() -> tuple[np.ndarray, np.ndarray]:
    """0/1 matrices (n_cells, 48) picking, per window cell along one axis, its interior and its border pixels."""
    cells = _window_cells()
    interior = np.zeros((len(cells), IMAGE_SIZE))
    border = np.zeros((len(cells), IMAGE_SIZE))
    for i, (first, _, first_border, last_border) in enumerate(cells):
        interior[i, first : first + WINDOW_CELL] = 1
        if first_border:
            interior[i, first] = 0
            border[i, first] = 1
        if last_border:
            interior[i, first + WINDOW_CELL - 1] = 0
            border[i, first + WINDOW_CELL - 1] = 1
    return interior, border


_INTERIOR, _BORDER = _selection_matrices()
_PLAIN_SELECTION = np.kron(np.eye(IMAGE_SIZE // PLAIN_CELL), np.ones(PLAIN_CELL))  # (3, 48)
_COLUMN_SELECTION = np.ascontiguousarray(np.concatenate([_INTERIOR, _PLAIN_SELECTION]).T)  # (48, 18 + 3)
N_WINDOW_CELLS = _INTERIOR.shape[0]  # 18 per axis
WINDOWS_DIM = N_WINDOW_CELLS**2 * ORIENTATIONS  # 2,592


def _window_order() -> tuple[np.ndarray, np.ndarray]:
    """Index array mapping (window y, window x, cell row, cell col) order onto the 18 x 18 cell grid."""
    cells = _window_cells()
    starts = sorted({c[1] for c in cells})
    per_window = {s: [i for i, c in enumerate(cells) if c[1] == s] for s in starts}
    rows, cols = [], []
    for wy in starts:
        for wx in starts:
            for r in per_window[wy]:
                for c in per_window[wx]:
                    rows.append(r)
                    cols.append(c)
    return np.array(rows), np.array(cols)


_ORDER_ROWS, _ORDER_COLS = _window_order()


def _orientation_bins(g_row: np.ndarray, g_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and orientation bin per pixel, with the arithmetic of scikit-image's ``hog_histograms``.

    orientation = degrees(arctan2(g_row, g_col)) % 180; bin i holds [22.5 i, 22.5 (i + 1)). An orientation that
    rounds to 180 falls in no bin there; here its magnitude is zeroed. Returns (magnitude float64, bin int64).
    """
    magnitude = np.hypot(g_col, g_row)
    orientation = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    width = 180.0 / ORIENTATIONS
    bins = np.floor(orientation / width).astype(np.int64)
    # Agree with scikit-image's comparisons exactly where the division rounds across a bin boundary.
    bins -= orientation < bins * width
    bins += orientation >= (bins + 1) * width
    magnitude = np.where((bins >= 0) & (bins < ORIENTATIONS), magnitude, 0.0)
    return magnitude, np.clip(bins, 0, ORIENTATIONS - 1)


def _lookup_tables() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Magnitude and bin for every integer gradient pair (g_row, g_col) in [-255, 255]^2, flattened.

    Faces are uint8, so their central differences are integers in that range and a table lookup gives exactly
    the numbers scikit-image computes with hypot/arctan2. Also returns the single bin a window's border row
    (g_row = 0) and border column (g_col = 0) fall in (0 and 4 with IEEE arithmetic; checked, not assumed).
    """
    values = np.arange(-255, 256, dtype=np.float64)
    magnitude, bins = _orientation_bins(values[:, None], values[None, :])
    row_border_bins = set(bins[255, values != 0].tolist())  # g_row = 0
    col_border_bins = set(bins[values != 0, 255].tolist())  # g_col = 0
    if len(row_border_bins) != 1 or len(col_border_bins) != 1:
        raise RuntimeError("unexpected arctan2 rounding: border gradients span several orientation bins")
    return magnitude.ravel(), bins.ravel().astype(np.intp), row_border_bins.pop(), col_border_bins.pop()


_TABLES: tuple[np.ndarray, np.ndarray, int, int] | None = None


def _tables() -> tuple[np.ndarray, np.ndarray, int, int]:
    global _TABLES
    if _TABLES is None:
        _TABLES = _lookup_tables()
    return _TABLES


def _binned_gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-image central differences (as ``skimage.feature._hog._hog_channel_gradient``), binned.

    Args:
        images: (n, 48, 48) grey levels.

    Returns:
        ``binned`` (n, 48 rows, 8 orientations, 48 columns) float64: each pixel's gradient magnitude in its
        orientation bin, zero in the others (columns last so that summing over them is one contiguous matrix
        product); ``abs_row`` and ``abs_col`` (n, 48, 48) float64: |g_row| and |g_col|, the magnitude of a pixel
        lying on a window's border column or border row, where the other component is zero.
    """
    n = len(images)
    if np.issubdtype(images.dtype, np.integer) and images.size and images.min() >= 0 and images.max() <= 255:
        img = images.astype(np.int32)
        g_row = np.zeros(img.shape, dtype=np.int32)
        g_col = np.zeros(img.shape, dtype=np.int32)
        g_row[:, 1:-1, :] = img[:, 2:, :] - img[:, :-2, :]
        g_col[:, :, 1:-1] = img[:, :, 2:] - img[:, :, :-2]
        table_magnitude, table_bins, _, _ = _tables()
        index = (g_row + 255) * 511 + (g_col + 255)
        magnitude = table_magnitude[index]
        bins = table_bins[index]
    else:
        img = images.astype(np.float64)
        g_row = np.zeros_like(img)
        g_col = np.zeros_like(img)
        g_row[:, 1:-1, :] = img[:, 2:, :] - img[:, :-2, :]
        g_col[:, :, 1:-1] = img[:, :, 2:] - img[:, :, :-2]
        magnitude, bins = _orientation_bins(g_row, g_col)
    # Flat position of (image, row, bin, column) in the (n, 48, 8, 48) output.
    rows = np.arange(n * IMAGE_SIZE).reshape(n, IMAGE_SIZE, 1) * (ORIENTATIONS * IMAGE_SIZE)
    position = rows + np.arange(IMAGE_SIZE) + bins * IMAGE_SIZE
    binned = np.zeros(n * IMAGE_SIZE * ORIENTATIONS * IMAGE_SIZE)
    binned[position.ravel()] = magnitude.ravel()
    binned = binned.reshape(n, IMAGE_SIZE, ORIENTATIONS, IMAGE_SIZE)
    return binned, np.abs(g_row).astype(np.float64), np.abs(g_col).astype(np.float64)


def _l2_hys(hist: np.ndarray) -> np.ndarray:
    """scikit-image's L2-Hys normalisation of each 1x1-cell block along the last axis (orientations)."""
    out = hist / np.sqrt(np.sum(hist**2, axis=-1, keepdims=True) + _EPS**2)
    out = np.minimum(out, 0.2)
    return out / np.sqrt(np.sum(out**2, axis=-1, keepdims=True) + _EPS**2)


def _l1_2016(hist: np.ndarray) -> np.ndarray:
    """scikit-image 0.12's block normalisation (the 2016 repository's): ``block / sqrt(block.sum() ** 2 + 1e-5)``."""
    return hist / np.sqrt(np.sum(hist, axis=-1, keepdims=True) ** 2 + _EPS)


BLOCK_NORMS = {"L2-Hys": _l2_hys, "L1-2016": _l1_2016}


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected images of shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}")
    return images


def _hog_from_binned(
    binned: np.ndarray, abs_row: np.ndarray, abs_col: np.ndarray, plain: bool, windows: bool, block_norm: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(n, 48, 8, 48) binned magnitudes and (n, 48, 48) |g_row|, |g_col| -> (n, 72) plain and (n, 2592) window HOG.

    Cell sums are products with 0/1 selection matrices: over each cell's columns, then over its rows.
    """
    n = len(binned)
    normalise = BLOCK_NORMS[block_norm]
    cols = binned @ _COLUMN_SELECTION  # (n, 48 rows, 8, 18 window cells + 3 plain cells)
    hog_plain_out = hog_windows_out = None
    if plain:
        hist = _PLAIN_SELECTION @ cols[..., N_WINDOW_CELLS:].reshape(n, IMAGE_SIZE, -1)  # (n, 3, 8 * 3)
        hist = hist.reshape(n, 3, ORIENTATIONS, 3).transpose(0, 1, 3, 2)
        hog_plain_out = normalise(hist / PLAIN_CELL**2).reshape(n, -1)
    if windows:
        # Pixels inside their window.
        hist = _INTERIOR @ cols[..., :N_WINDOW_CELLS].reshape(n, IMAGE_SIZE, -1)  # (n, 18, 8 * 18)
        hist = hist.reshape(n, N_WINDOW_CELLS, ORIENTATIONS, N_WINDOW_CELLS).transpose(0, 1, 3, 2).copy()
        # A pixel on its window's first/last row has g_row = 0 there: magnitude |g_col|, all in one bin; likewise
        # for columns. A window corner has no gradient at all.
        _, _, row_border_bin, col_border_bin = _tables()
        hist[..., row_border_bin] += _BORDER @ abs_col @ _INTERIOR.T
        hist[..., col_border_bin] += _INTERIOR @ abs_row @ _BORDER.T
        hist = normalise(hist / WINDOW_CELL**2)  # (n, cell row, cell col, orientation)
        hog_windows_out = hist[:, _ORDER_ROWS, _ORDER_COLS, :].reshape(n, -1)
    return hog_plain_out, hog_windows_out


def hog_features(
    images: np.ndarray, *, plain: bool = True, windows: bool = True, block_norm: str = "L2-Hys"
) -> dict[str, np.ndarray]:
    """Both HOG kinds from one pass over the gradients.

    Args:
        images: (n, 48, 48) grey levels (uint8, or any real dtype); a single (48, 48) image is accepted too.
        block_norm: ``"L2-Hys"`` (current scikit-image, what the project stores) or ``"L1-2016"`` (scikit-image
            0.12's, which the 2016 repository got; compared in ``experiments/bench_hog_norm.py``).

    Returns:
        ``{"hog_plain": (n, 72) float32, "hog_windows": (n, 2592) float32}`` (only the kinds asked for).
    """
    images = _check_images(images)
    if block_norm not in BLOCK_NORMS:
        raise ValueError(f"unknown block_norm {block_norm!r}; choose one of {sorted(BLOCK_NORMS)}")
    out = {}
    if plain:
        out["hog_plain"] = np.empty((len(images), PLAIN_DIM), dtype=np.float32)
    if windows:
        out["hog_windows"] = np.empty((len(images), WINDOWS_DIM), dtype=np.float32)
    for lo in range(0, len(images), _CHUNK):
        binned, abs_row, abs_col = _binned_gradients(images[lo : lo + _CHUNK])
        plain_part, windows_part = _hog_from_binned(binned, abs_row, abs_col, plain, windows, block_norm)
        if plain:
            out["hog_plain"][lo : lo + len(binned)] = plain_part
        if windows:
            out["hog_windows"][lo : lo + len(binned)] = windows_part
    return out


def hog_plain(images: np.ndarray) -> np.ndarray:
    """Plain HOG of each face: 8 orientations, 16x16 cells, 1x1 blocks, L2-Hys.

    Args:
        images: (n, 48, 48) grey levels (uint8, or any real dtype); a single (48, 48) image is accepted too.

    Returns:
        (n, 72) float32, equal to ``skimage.feature.hog(image, 8, (16, 16), (1, 1))`` per image within 1e-6.
    """
    return hog_features(images, windows=False)["hog_plain"]


def hog_windows(images: np.ndarray) -> np.ndarray:
    """Sliding-window HOG of each face (24x24 windows every 6 px, 8x8 cells, 8 orientations, L2-Hys).

    Args:
        images: (n, 48, 48) grey levels (uint8, or any real dtype); a single (48, 48) image is accepted too.

    Returns:
        (n, 2592) float32, equal to ``hog_windows_reference`` per image within 1e-6. Layout: windows in row-major
        order (y, then x), each window's whole cells in row-major order, 8 orientations per cell.
    """
    return hog_features(images, plain=False)["hog_windows"]


def hog_windows_reference(image: np.ndarray) -> np.ndarray:
    """The definition of ``hog_windows`` for one image: ``skimage.feature.hog`` on each window (slow).

    Args:
        image: (48, 48) grey levels.

    Returns:
        (2592,) float64.
    """
    from skimage.feature import hog

    parts = []
    for y in range(0, IMAGE_SIZE, WINDOW_STEP):
        for x in range(0, IMAGE_SIZE, WINDOW_STEP):
            window = image[y : y + WINDOW_SIZE, x : x + WINDOW_SIZE]
            if min(window.shape) < WINDOW_CELL:
                continue  # scikit-image raises on a window smaller than one cell; it has no whole cell anyway
            parts.append(
                hog(window, orientations=ORIENTATIONS, pixels_per_cell=(WINDOW_CELL, WINDOW_CELL),
                    cells_per_block=(1, 1), feature_vector=True)
            )
    return np.concatenate(parts)


def hog_plain_reference(image: np.ndarray) -> np.ndarray:
    """``skimage.feature.hog`` of one (48, 48) image with the plain settings: (72,) float64."""
    from skimage.feature import hog

    return hog(image, orientations=ORIENTATIONS, pixels_per_cell=(PLAIN_CELL, PLAIN_CELL), cells_per_block=(1, 1))


def hog_visualisations(images: np.ndarray) -> np.ndarray:
    """scikit-image's HOG picture of each face with the plain settings: (n, 48, 48) float32 (slow; opt-in)."""
    from skimage.feature import hog

    images = _check_images(images)
    out = np.empty(images.shape, dtype=np.float32)
    for i, image in enumerate(images):
        _, out[i] = hog(image, orientations=ORIENTATIONS, pixels_per_cell=(PLAIN_CELL, PLAIN_CELL),
                        cells_per_block=(1, 1), visualize=True)
    return out
