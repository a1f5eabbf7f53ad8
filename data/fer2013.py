"""Read the FER2013 csv (``fer2013.csv``, ``icml_face_data.csv``, gzipped or not) into per-split arrays.

The file is one header line and one row per face: an emotion label 0..6, 2,304 space-separated grey levels
(48x48, row-major) and a ``Usage`` split name. Both header variants in circulation are accepted:
``emotion,pixels,Usage`` (Kaggle's fer2013.csv) and ``emotion, Usage, pixels`` (icml_face_data.csv).

Rows are split and checked with a Python loop over lines (35,887 of them: cheap), but the 82 million pixel
values are parsed by numpy in large batches; only a batch that fails is re-read row by row to name the bad line.

    >>> data = load_fer2013("../shared/data/fer2013.csv.gz", limit=100)  # doctest: +SKIP
    >>> data.splits["Training"].images.shape
    (100, 48, 48)
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import UserError
from parameters import EMOTIONS, SPLITS

IMAGE_SIZE = 48
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
REQUIRED_COLUMNS = ("emotion", "pixels", "Usage")
_HEADER_SEARCH_LINES = 50  # stray text (citations) may precede the header in some copies
_BATCH_ROWS = 2048  # rows whose pixel strings numpy parses in one call


class Fer2013FormatError(UserError, ValueError):
    """The csv is not in FER2013 format; the message names the file and, where it applies, the line."""


class Fer2013HeaderError(Fer2013FormatError):
    """The file as a whole is unusable (empty, unreadable, truncated, no FER2013 header): skipping rows cannot help."""


@dataclass(frozen=True)
class BadRow:
    """A row that was skipped (``skip_bad_rows=True``): its 1-based line number in the file and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class Split:
    """One ``Usage`` split, in file order.

    Attributes:
        images: (n, 48, 48) uint8 grey levels.
        labels: (n,) int64 emotion indices into ``parameters.EMOTIONS``.
        lines: (n,) int64 1-based line numbers in the csv.
        rows: (n,) int64 0-based index of the row among the file's data rows (skipped bad rows keep their index),
            i.e. the row of the same face in files aligned with FER2013, such as FER+'s ``fer2013new.csv``.
    """

    images: np.ndarray
    labels: np.ndarray
    lines: np.ndarray
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Fer2013Data:
    """What ``load_fer2013`` returns: the splits present in the file (in Training, PublicTest, PrivateTest order)."""

    path: Path
    splits: dict[str, Split]
    skipped: list[BadRow] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return sum(len(s) for s in self.splits.values())


def _open_lines(path: Path) -> Iterator[bytes]:
    """Yield the file's lines as bytes (gzip detected by its magic number, not by the name), without the UTF-8
    byte-order mark Excel writes. A truncated or corrupt gzip stream, or a read error, is a Fer2013HeaderError
    naming the file and the line reached."""
    lineno = 0
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as handle:
            for lineno, line in enumerate(handle, start=1):
                yield line.removeprefix(b"\xef\xbb\xbf") if lineno == 1 else line
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise Fer2013HeaderError(
            f"{path}: the gzip stream is truncated or corrupt after line {lineno} ({err}); download the file again"
        ) from None
    except OSError as err:
        raise Fer2013HeaderError(f"{path}: cannot read ({err.strerror or err})") from None


def _clip(text: bytes | str, limit: int = 60) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_header(fields: list[str]) -> dict[str, int] | None:
    """Column name -> index if ``fields`` is a FER2013 header (names compared stripped, case-insensitively)."""
    names = [f.strip().strip('"').lower() for f in fields]
    if "emotion" not in names or "pixels" not in names:
        return None
    return {col: names.index(col.lower()) for col in REQUIRED_COLUMNS if col.lower() in names}


def _pixel_problem(text: bytes) -> str | None:
    """Why one row's pixel field is bad (slow, exact; only used on rows the fast path flagged), or None."""
    tokens = text.split()
    if len(tokens) != N_PIXELS:
        return f"expected {N_PIXELS} pixel values, found {len(tokens)}"
    for i, token in enumerate(tokens):
        try:
            value = int(token)
        except ValueError:
            return f"pixel {i + 1} is not an integer: {_clip(token, 20)!r}"
        if not 0 <= value <= 255:
            return f"pixel {i + 1} value {value} out of range 0..255"
    return None


def _parse_pixels(texts: list[bytes]) -> np.ndarray | None:
    """Parse a batch of pixel fields at once: (n, 2304) uint8, or None when any row is bad."""
    joined = b" ".join(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(joined, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if values.size != len(texts) * N_PIXELS or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        return None
    return values.astype(np.uint8).reshape(len(texts), N_PIXELS)


def load_fer2013(path: str | Path, *, skip_bad_rows: bool = False, limit: int | None = None) -> Fer2013Data:
    """Read a FER2013 csv (plain or gzipped) into per-split arrays.

    Args:
        path: ``fer2013.csv``, ``icml_face_data.csv`` or either gzipped.
        skip_bad_rows: skip malformed rows (recorded in ``Fer2013Data.skipped``) instead of raising.
        limit: read only the first ``limit`` data rows (bad rows count towards it).

    Returns:
        ``Fer2013Data`` whose ``splits`` map each Usage present to ``Split(images (n, 48, 48) uint8,
        labels (n,) int64, lines (n,) int64, rows (n,) int64)``.

    Raises:
        FileNotFoundError: no such file.
        Fer2013FormatError: empty file, no header with the emotion/pixels/Usage columns, no data rows, or (unless
            ``skip_bad_rows``) the first bad row: wrong field or pixel count, non-integer or out-of-range pixel,
            label not in 0..6, unknown Usage, stray text line. The message starts with ``"<path>:<line>:"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")

    skipped: list[BadRow] = []

    def bad(line: int, reason: str) -> None:
        if not skip_bad_rows:
            raise Fer2013FormatError(f"{path}:{line}: {reason}")
        skipped.append(BadRow(line, reason))

    columns: dict[str, int] | None = None
    pre_header: list[tuple[int, bytes]] = []
    labels: list[int] = []
    usages: list[str] = []
    pixels: list[bytes] = []
    lines: list[int] = []
    rows: list[int] = []
    n_data = 0
    saw_content = False
    for lineno, raw in enumerate(_open_lines(path), start=1):
        text = raw.rstrip(b"\r\n")
        if not text.strip():
            continue
        saw_content = True
        if columns is None:
            header = _parse_header(text.decode("utf-8", errors="replace").split(","))
            if header is None:
                pre_header.append((lineno, text))
                if len(pre_header) >= _HEADER_SEARCH_LINES:
                    break
                continue
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise Fer2013HeaderError(
                    f"{path}:{lineno}: header {_clip(text)!r} lacks column(s) {missing}; "
                    f"expected {', '.join(REQUIRED_COLUMNS)}"
                )
            columns = header
            n_columns = len(text.split(b","))
            for pre_line, pre_text in pre_header:
                bad(pre_line, f"text before the header: {_clip(pre_text)!r}")
            continue
        if limit is not None and n_data >= limit:
            break
        row_index = n_data
        n_data += 1
        fields = text.split(b",")
        if len(fields) != n_columns:
            bad(lineno, f"expected {n_columns} comma-separated fields, found {len(fields)}: {_clip(text)!r}")
            continue
        emotion = fields[columns["emotion"]].strip().strip(b'"')
        try:
            label = int(emotion)
        except ValueError:
            bad(lineno, f"emotion {_clip(emotion)!r} is not an integer (stray text line?): {_clip(text)!r}")
            continue
        if not 0 <= label < len(EMOTIONS):
            bad(lineno, f"emotion {label} not in 0..{len(EMOTIONS) - 1}")
            continue
        usage = fields[columns["Usage"]].strip().strip(b'"').decode("utf-8", errors="replace")
        if usage not in SPLITS:
            bad(lineno, f"unknown Usage {_clip(usage)!r}; expected one of {', '.join(SPLITS)}")
            continue
        labels.append(label)
        usages.append(usage)
        pixels.append(fields[columns["pixels"]].strip().strip(b'"'))
        lines.append(lineno)
        rows.append(row_index)

    if not saw_content:
        raise Fer2013HeaderError(f"{path}: empty file")
    if columns is None:
        first_line, first_text = pre_header[0]
        raise Fer2013HeaderError(
            f"{path}:{first_line}: no header naming the columns {', '.join(REQUIRED_COLUMNS)} "
            f"(first line: {_clip(first_text)!r})"
        )

    images = np.empty((len(pixels), N_PIXELS), dtype=np.uint8)
    keep = np.ones(len(pixels), dtype=bool)
    for lo in range(0, len(pixels), _BATCH_ROWS):
        batch = pixels[lo : lo + _BATCH_ROWS]
        parsed = _parse_pixels(batch)
        if parsed is not None:
            images[lo : lo + len(batch)] = parsed
            continue
        for i, text in enumerate(batch, start=lo):  # some row in this batch is bad: find which
            problem = _pixel_problem(text)
            if problem is None:
                images[i] = np.array(text.split(), dtype=np.uint8)
            else:
                bad(lines[i], problem)
                keep[i] = False
    del pixels

    if n_data == 0:
        raise Fer2013HeaderError(f"{path}: no data rows after the header")
    if not keep.any():
        raise Fer2013FormatError(f"{path}: no valid data rows ({len(skipped)} bad rows skipped)")
    skipped.sort(key=lambda b: b.line)
    label_arr = np.asarray(labels, dtype=np.int64)[keep]
    line_arr = np.asarray(lines, dtype=np.int64)[keep]
    row_arr = np.asarray(rows, dtype=np.int64)[keep]
    usage_arr = np.asarray(usages)[keep]
    images = images[keep].reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    splits = {}
    for name in SPLITS:
        mask = usage_arr == name
        if mask.any():
            splits[name] = Split(images[mask], label_arr[mask], line_arr[mask], row_arr[mask])
    return Fer2013Data(path=path, splits=splits, skipped=skipped)
