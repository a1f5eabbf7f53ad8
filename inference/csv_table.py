"""``predict.py --csv``: every face of every photo as one row of a table that opens in a spreadsheet or pandas.

Columns: ``image, status, face, x, y, w, h, emotion, confidence, <one column per class>, error``.

* ``status`` is ``face`` for a detected face (``face`` numbers the faces of an image from 0, left to right; the box
  is ``x, y, w, h`` in the image's pixels; probabilities with 6 decimals),
* ``no face`` for an image in which no face was found (one row, the other columns empty),
* ``unreadable`` for a file that is not a decodable image (one row; ``error`` says why).

So ``pandas.read_csv(path).query("status == 'face'")`` gives the faces, and every input file appears at least once.
The file is written under a temporary name and renamed: an interrupted run leaves no half-written table.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FACE, NO_FACE, UNREADABLE = "face", "no face", "unreadable"
FIXED_COLUMNS = ("image", "status", "face", "x", "y", "w", "h", "emotion", "confidence")


def csv_header(class_names: Sequence[str]) -> list[str]:
    """The column names for a model with these classes."""
    return [*FIXED_COLUMNS, *class_names, "error"]


def face_rows(image: str | Path, predictions: Sequence[Any], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for one image: one per ``inference.predictor.FacePrediction``, or a single ``no face`` row."""
    if not predictions:
        return [{"image": str(image), "status": NO_FACE}]
    rows = []
    for index, pred in enumerate(predictions):
        x, y, w, h = (int(v) for v in pred.box)
        row = {"image": str(image), "status": FACE, "face": index, "x": x, "y": y, "w": w, "h": h,
               "emotion": pred.emotion, "confidence": f"{pred.confidence:.6f}"}
        row.update({name: f"{pred.probabilities[name]:.6f}" for name in class_names})
        rows.append(row)
    return rows


def unreadable_row(image: str | Path, reason: str) -> dict[str, Any]:
    """The row of a file that could not be read as an image."""
    return {"image": str(image), "status": UNREADABLE, "error": reason}


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], class_names: Sequence[str]) -> Path:
    """Write ``rows`` (missing columns left empty) to ``path`` atomically; returns the path.

    Raises OSError when the folder cannot be written (the temporary file is removed).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=csv_header(class_names), restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
