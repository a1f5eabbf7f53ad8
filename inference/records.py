"""Per-face records of a video run (``predict_from_video.py --records out.jsonl|out.csv``).

One row per face per prediction, in frame order:

* ``frame``: 0-based index of the frame the prediction ran on; ``time_s``: its time in seconds on the video's clock
  (frame / fps) for a file, since the start for a camera;
* ``track_id``: 0, 1, 2... in order of first sight, the same while the IoU tracker (inference.video.FaceTracker)
  follows the face from one prediction to the next;
* the box ``x, y, w, h`` in frame pixels, ``emotion`` and ``confidence`` (smoothed, as drawn), and one probability
  per class (csv: a ``p_<Class>`` column each; JSON lines: ``"box": [x, y, w, h]`` and ``"probabilities": {...}``).

The file is written under a temporary name beside the target and renamed when the run ends (also when it is stopped
with 'q' or Ctrl-C: the rows so far are complete), removed if the run fails. An existing file is replaced only with
``overwrite=True``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from errors import UserError
from inference.predictor import FacePrediction

RECORD_SUFFIXES = (".jsonl", ".csv")


class RecordsError(UserError):
    """A records path that cannot be used (wrong suffix, exists without overwrite, unwritable folder)."""


def check_records_path(path: Path, *, overwrite: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Raise RecordsError before any work when ``path`` cannot be written as asked."""
    if path.suffix.lower() not in RECORD_SUFFIXES:
        raise RecordsError(f"--records {path}: name a .jsonl or .csv file")
    if any(path.resolve() == Path(source).resolve() for source in inputs):
        raise RecordsError(f"--records {path} is the input video: choose another name")
    if path.is_dir():
        raise RecordsError(f"--records {path} is a directory")
    if path.exists() and not overwrite:
        raise RecordsError(f"--records {path} exists: pass --overwrite to replace it")


class RecordsWriter:
    """Context manager writing records to ``path`` (.jsonl or .csv) through a temporary file.

    ``write(frame, seconds, faces, track_ids)`` matches ``inference.video.run_video``'s ``on_tracks`` callback.
    ``rows`` counts the rows written.
    """

    def __init__(self, path: str | Path, class_names: Sequence[str], *, overwrite: bool = False):
        self.path = Path(path)
        check_records_path(self.path, overwrite=overwrite)
        self.class_names = tuple(class_names)
        self.format = self.path.suffix.lower().lstrip(".")
        self.temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.rows = 0
        self._file: IO[str] | None = None
        self._csv = None

    def __enter__(self) -> RecordsWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.temp.open("w", newline="", encoding="utf-8")
        except OSError as err:
            raise RecordsError(f"--records {self.path}: cannot write here ({err.strerror or err})") from None
        if self.format == "csv":
            self._csv = csv.writer(self._file)
            columns = ["frame", "time_s", "track_id", "x", "y", "w", "h", "emotion", "confidence"]
            self._csv.writerow(columns + [f"p_{name}" for name in self.class_names])
        return self

    def write(self, frame: int, seconds: float, faces: Sequence[FacePrediction], track_ids: Sequence[int]) -> None:
        for face, track_id in zip(faces, track_ids, strict=True):
            probabilities = [round(float(face.probabilities[name]), 6) for name in self.class_names]
            if self._csv is not None:
                row = [frame, round(seconds, 4), track_id, *face.box, face.emotion, round(face.confidence, 6)]
                self._csv.writerow(row + probabilities)
            else:
                record = {"frame": frame, "time_s": round(seconds, 4), "track_id": track_id, **face.to_dict()}
                self._file.write(json.dumps(record) + "\n")
            self.rows += 1

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
        if kind is None:
            os.replace(self.temp, self.path)
        else:
            self.temp.unlink(missing_ok=True)
