"""FER+ labels (Microsoft's ``fer2013new.csv``): majority-vote classes and vote distributions for FER2013's faces.

``fer2013new.csv`` has one row per row of ``fer2013.csv``, in the same order::

    Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF
    Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0

(vote counts of 10 annotators). Classes: FER2013's seven in FER2013's order, then ``Contempt``
(``FERPLUS_CLASSES``), so labels 0..6 mean the same in both files and ``--expressions 0,3,4,5,6`` keeps its
meaning; 7 is Contempt.

Majority rule (``majority_labels``): the column with the most votes among all ten wins. A face is dropped when

* ``no_votes``: every count is 0;
* ``unknown_or_nf``: ``unknown`` or ``NF`` (not a face) has the top count, alone or shared;
* ``tie``: two or more emotions share the top count.

This is plurality voting, as most FER+ papers describe it; Microsoft's reference code is stricter (it first zeroes
single votes and requires more than half of the remaining votes), which keeps fewer faces.

Soft labels (``soft_labels``): the eight emotion counts divided by their sum, (n, 8) float32 rows summing to 1.
Blended labels (``blend_labels``): FER2013's own label kept, mixed with the FER+ votes over its seven classes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from data.fer2013 import Fer2013Data
from errors import UserError
from parameters import EMOTIONS

FERPLUS_CLASSES: tuple[str, ...] = (*EMOTIONS, "Contempt")
HEADER: tuple[str, ...] = (
    "Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)
# FER+ vote column -> toolkit class name.
COLUMN_CLASS: dict[str, str] = {
    "anger": "Angry", "disgust": "Disgust", "fear": "Fear", "happiness": "Happy", "sadness": "Sad",
    "surprise": "Surprise", "neutral": "Neutral", "contempt": "Contempt",
}
DROP_REASONS: tuple[str, ...] = ("no_votes", "unknown_or_nf", "tie")


class FerPlusFormatError(UserError, ValueError):
    """fer2013new.csv is malformed or does not line up with fer2013.csv; the message names the file and line."""


@dataclass(frozen=True)
class FerPlusVotes:
    """The parsed file. ``votes`` (n, 8) int64 in FERPLUS_CLASSES order; ``unknown``/``nf`` (n,) int64;
    ``usage`` (n,) str. Row i (file line i + 2) describes data row i of fer2013.csv."""

    path: Path
    usage: np.ndarray
    votes: np.ndarray
    unknown: np.ndarray
    nf: np.ndarray

    def __len__(self) -> int:
        return len(self.usage)


def read_ferplus(path: str | Path) -> FerPlusVotes:
    """Read ``fer2013new.csv``. Raises FerPlusFormatError (file and line) for a bad header or row,
    FileNotFoundError when absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FER+ file (fer2013new.csv)")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise FerPlusFormatError(f"{path}: empty file")
    if tuple(h.strip() for h in header) != HEADER:
        raise FerPlusFormatError(
            f"{path}:1: header {','.join(header)[:200]!r} is not FER+'s; expected {','.join(HEADER)}"
        )
    order = [HEADER.index(c) for c in sorted(COLUMN_CLASS, key=lambda c: FERPLUS_CLASSES.index(COLUMN_CLASS[c]))]
    usage: list[str] = []
    counts: list[list[int]] = []
    for index, row in enumerate(reader):
        line = index + 2
        if not row or not "".join(row).strip():
            if any(r and "".join(r).strip() for r in reader):
                raise FerPlusFormatError(f"{path}:{line}: blank line inside the data")
            break
        if len(row) != len(HEADER):
            raise FerPlusFormatError(f"{path}:{line}: expected {len(HEADER)} fields, found {len(row)}")
        try:
            values = [int(v) for v in row[2:]]
        except ValueError:
            raise FerPlusFormatError(f"{path}:{line}: vote counts must be integers: {','.join(row)[:200]!r}") from None
        if min(values) < 0:
            raise FerPlusFormatError(f"{path}:{line}: negative vote count")
        usage.append(row[0].strip())
        counts.append(values)
    if not counts:
        raise FerPlusFormatError(f"{path}: no data rows after the header")
    table = np.asarray(counts, dtype=np.int64)  # columns in HEADER[2:] order
    offset = 2
    return FerPlusVotes(
        path=path,
        usage=np.asarray(usage),
        votes=table[:, [i - offset for i in order]],
        unknown=table[:, HEADER.index("unknown") - offset],
        nf=table[:, HEADER.index("NF") - offset],
    )


def majority_labels(votes: FerPlusVotes) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, reasons)``: (n,) int64 index into FERPLUS_CLASSES, -1 where dropped, and (n,) int64 index into
    DROP_REASONS, -1 where kept (rules in the module docstring)."""
    everything = np.column_stack([votes.votes, votes.unknown, votes.nf])
    top = everything.max(axis=1)
    winners = everything == top[:, None]
    reasons = np.full(len(votes), -1, dtype=np.int64)
    reasons[winners[:, 8:].any(axis=1)] = DROP_REASONS.index("unknown_or_nf")
    reasons[(reasons < 0) & (winners[:, :8].sum(axis=1) > 1)] = DROP_REASONS.index("tie")
    reasons[top == 0] = DROP_REASONS.index("no_votes")
    labels = np.where(reasons < 0, votes.votes.argmax(axis=1), -1).astype(np.int64)
    return labels, reasons


def soft_labels(votes: np.ndarray) -> np.ndarray:
    """(n, 8) emotion vote counts -> (n, 8) float32 distributions (rows with no emotion vote stay 0)."""
    votes = np.asarray(votes, dtype=np.float64)
    total = votes.sum(axis=1, keepdims=True)
    return (votes / np.maximum(total, 1)).astype(np.float32)


def blend_labels(data: Fer2013Data, votes: np.ndarray, blend: float) -> np.ndarray:
    """(N, 7) float32 per csv data row: ``(1 - blend) * one-hot(FER2013 label) + blend * votes / votes.sum()`` over
    FER2013's seven classes (``votes``: FER+ counts in FERPLUS_CLASSES order; Contempt's column is not used).
    Rows whose seven counts are all 0 keep the one-hot; rows not in ``data`` stay 0."""
    k = len(EMOTIONS)
    seven = np.asarray(votes, dtype=np.float64)[:, :k]
    total = seven.sum(axis=1, keepdims=True)
    out = np.zeros((len(seven), k), dtype=np.float64)
    for split in data.splits.values():
        rows = split.rows if split.rows is not None else np.arange(len(split))
        onehot = np.eye(k)[split.labels]
        mixed = (1 - blend) * onehot + blend * seven[rows] / np.maximum(total[rows], 1)
        out[rows] = np.where(total[rows] > 0, mixed, onehot)
    return out.astype(np.float32)


@dataclass(frozen=True)
class FerPlusLabels:
    """What ``relabel`` returns: the faces kept with FER+ labels, the (N, 8) vote distributions of every data row
    (index with ``Split.rows``) and the drop counts."""

    data: Fer2013Data
    distributions: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> faces
    dropped_by_split: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())


def relabel(data: Fer2013Data, votes: FerPlusVotes, *, complete: bool = True) -> FerPlusLabels:
    """Replace FER2013's labels by the FER+ majority and drop the faces without one.

    ``complete``: ``data`` holds the whole csv (no ``limit``), so the row counts must agree exactly; otherwise the
    FER+ file must at least cover the rows read. Every face's ``Usage`` must agree with the FER+ row's.

    Raises FerPlusFormatError naming both files (and lines) when they do not line up.
    """
    n_data_rows = data.n_rows + sum(1 for b in data.skipped if not b.reason.startswith("text before the header"))
    max_row = max((int(s.rows.max()) for s in data.splits.values() if s.rows is not None and len(s)), default=-1)
    if (complete and len(votes) != n_data_rows) or max_row >= len(votes):
        theirs = f"{n_data_rows}" if complete else f"at least {max_row + 1}"
        raise FerPlusFormatError(
            f"{votes.path}: {len(votes)} data rows but {data.path} has {theirs}; the FER+ file must describe "
            "fer2013.csv row for row (row i of fer2013new.csv = row i of fer2013.csv)"
        )
    labels, reasons = majority_labels(votes)
    splits, dropped_by_split = {}, {}
    dropped = dict.fromkeys(DROP_REASONS, 0)
    for name, split in data.splits.items():
        rows = split.rows if split.rows is not None else np.arange(len(split))
        wrong = np.flatnonzero(votes.usage[rows] != name)
        if len(wrong):
            i = int(rows[wrong[0]])
            raise FerPlusFormatError(
                f"{votes.path}:{i + 2}: Usage {str(votes.usage[i])!r}, but the same row of {data.path} "
                f"(line {int(split.lines[wrong[0]])}) is {name!r}: the files do not line up "
                f"({len(wrong)} {name} rows disagree)"
            )
        keep = labels[rows] >= 0
        counts = {r: int(np.sum(reasons[rows] == k)) for k, r in enumerate(DROP_REASONS)}
        dropped_by_split[name] = counts
        for reason, count in counts.items():
            dropped[reason] += count
        if keep.any():
            splits[name] = replace(
                split, images=split.images[keep], labels=labels[rows][keep], lines=split.lines[keep], rows=rows[keep]
            )
    return FerPlusLabels(
        data=replace(data, splits=splits),
        distributions=soft_labels(votes.votes),
        dropped=dropped,
        dropped_by_split=dropped_by_split,
    )
