"""Evaluate a model on a folder of labelled photos: ``DIR/<class>/*.jpg`` through the same face pipeline as predict.py.

Subfolder names are matched case-insensitively to the model's classes, with common synonyms (``SYNONYMS``:
angry/anger, happy/happiness, sad/sadness, disgust/disgusted, fear/fearful, surprise/surprised, neutral,
contempt). Every image goes through ``inference.predictor.FacePredictor``; an image with several faces is judged by its
largest face, and an image with no face counts as an error (column ``no face`` of the confusion matrix) and is
listed. Files that cannot be decoded are listed and left out of the accuracy.

Writes to ``out_dir``::

    folder_metrics.json                      accuracy, per-class recall/precision, confusion matrix, no-face list
    folder_confusion_matrix.png/.json        rows: true class; columns: predicted class + "no face"
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errors import UserError
from inference.faces import FacePipeline
from inference.images import IMAGE_SUFFIXES, ImageReadError, load_image
from inference.predictor import FacePredictor

NO_FACE = "no face"
# Groups of folder names that mean the same expression (all lower case).
SYNONYMS: tuple[frozenset[str], ...] = (
    frozenset({"angry", "anger", "mad"}),
    frozenset({"happy", "happiness", "joy"}),
    frozenset({"sad", "sadness"}),
    frozenset({"disgust", "disgusted"}),
    frozenset({"fear", "fearful", "afraid", "scared"}),
    frozenset({"surprise", "surprised"}),
    frozenset({"neutral"}),
    frozenset({"contempt", "contemptuous"}),
)


class FolderEvalError(UserError, ValueError):
    """A folder that cannot be evaluated (no class subfolders, names matching no class, no images)."""


def folder_aliases(class_names: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Lower-case folder name -> index of the model class it means (the class's own name and its synonyms)."""
    aliases: dict[str, int] = {}
    for index, name in enumerate(class_names):
        key = name.strip().lower()
        names = {key}
        for group in SYNONYMS:
            if key in group:
                names |= group
        for alias in names:
            aliases.setdefault(alias, index)
    return aliases


def match_folders(images_dir: str | Path, class_names: list[str] | tuple[str, ...]) -> dict[Path, int]:
    """Class subfolders of ``images_dir`` -> class index. Hidden folders are ignored.

    Raises FolderEvalError listing the subfolders that match no class (and the accepted names), or when there are
    no subfolders at all.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FolderEvalError(f"--images-dir {images_dir}: no such folder")
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FolderEvalError(f"{images_dir}: no class subfolders (expected one per class, e.g. {images_dir}/happy/)")
    aliases = folder_aliases(class_names)
    unmatched = [p.name for p in folders if p.name.strip().lower() not in aliases]
    if unmatched:
        raise FolderEvalError(
            f"{images_dir}: subfolder(s) {unmatched} match none of the model's classes {list(class_names)}; "
            f"accepted names (any case): {sorted(aliases)}"
        )
    return {p: aliases[p.name.strip().lower()] for p in folders}


@dataclass(frozen=True)
class ImageResult:
    """One image: its true class index, predicted index (-1: no face) and the top probability."""

    path: Path
    true: int
    predicted: int
    confidence: float
    n_faces: int


def evaluate_folder(
    predictor: FacePredictor, images_dir: str | Path, *, progress: bool = False
) -> tuple[dict[str, Any], list[ImageResult]]:
    """Run every image of ``images_dir``'s class subfolders through ``predictor``; return (metrics, per image).

    Metrics: ``accuracy`` (no-face images count as wrong), ``n_images``, ``n_no_face``, ``no_face`` (paths),
    ``unreadable`` ({path: reason}), ``class_names``, ``folders`` {subfolder: class}, ``per_class``
    {class: recall, precision, support, no_face}, ``confusion_matrix`` (k x (k + 1), last column ``no face``),
    ``column_names``.
    """
    class_names = list(predictor.class_names)
    k = len(class_names)
    folders = match_folders(images_dir, class_names)
    files = [
        (path, label)
        for folder, label in folders.items()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise FolderEvalError(f"{images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the class subfolders")
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="images", unit="img")
    results: list[ImageResult] = []
    unreadable: dict[str, str] = {}
    for path, label in files:
        try:
            faces = predictor.predict(load_image(path))
        except (ImageReadError, ValueError) as err:
            unreadable[str(path)] = str(err)
            continue
        if not faces:
            results.append(ImageResult(path, label, -1, 0.0, 0))
            continue
        face = max(faces, key=lambda f: f.box[2] * f.box[3])  # the largest face speaks for the photo
        results.append(ImageResult(path, label, class_names.index(face.emotion), face.confidence, len(faces)))
    if not results:
        raise FolderEvalError(f"{images_dir}: none of the {len(unreadable)} image files could be read")

    matrix = np.zeros((k, k + 1), dtype=np.int64)
    for r in results:
        matrix[r.true, r.predicted if r.predicted >= 0 else k] += 1
    support = matrix.sum(axis=1)
    predicted_as = matrix[:, :k].sum(axis=0)
    diagonal = np.diag(matrix[:, :k])
    per_class = {
        name: {
            "recall": float(diagonal[i] / support[i]) if support[i] else None,
            "precision": float(diagonal[i] / predicted_as[i]) if predicted_as[i] else None,
            "support": int(support[i]),
            "no_face": int(matrix[i, k]),
        }
        for i, name in enumerate(class_names)
    }
    no_face = [str(r.path) for r in results if r.predicted < 0]
    metrics = {
        "images_dir": str(images_dir),
        "accuracy": float(diagonal.sum() / len(results)),
        "accuracy_on_faces": float(diagonal.sum() / max(1, len(results) - len(no_face))),
        "n_images": len(results),
        "n_no_face": len(no_face),
        "no_face": no_face,
        "unreadable": unreadable,
        "class_names": class_names,
        "folders": {p.name: class_names[i] for p, i in folders.items()},
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "column_names": [*class_names, NO_FACE],
        "detector": None if predictor.assume_face else predictor.detector_name,
        "assume_face": predictor.assume_face,
        "pipeline": dataclasses.asdict(predictor.pipeline),
    }
    return metrics, results


def report_text(metrics: dict[str, Any]) -> str:
    """A short human-readable summary of ``evaluate_folder``'s metrics."""
    lines = [
        f"{metrics['images_dir']}: accuracy {metrics['accuracy']:.4f} on {metrics['n_images']} images "
        f"({metrics['n_no_face']} without a face, counted as errors; accuracy on the others "
        f"{metrics['accuracy_on_faces']:.4f})",
        f"{'class':<12} {'recall':>7} {'precision':>9} {'images':>7} {'no face':>8}",
    ]
    for name, row in metrics["per_class"].items():
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        lines.append(f"{name:<12} {recall:>7} {precision:>9} {row['support']:>7} {row['no_face']:>8}")
    if metrics["no_face"]:
        lines.append("no face found in:")
        lines += [f"  {path}" for path in metrics["no_face"]]
    for path, reason in metrics["unreadable"].items():
        lines.append(f"unreadable (not counted): {path}: {reason}")
    return "\n".join(lines)


def evaluate_folder_run(
    model_path: str | Path,
    images_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    pipeline: FacePipeline | None = None,
    verbose: int = 1,
    tta: str | None = None,
) -> dict[str, Any]:
    """Load ``model_path`` into a FacePredictor with ``pipeline`` (default ``FacePipeline.for_photos()``, as
    predict.py) and test-time augmentation ``tta`` (none, flip, ten-crop), evaluate ``images_dir``, write the files
    listed in the module docstring to ``out_dir`` (default: the model's folder) and return the metrics."""
    from inference.evaluation import plot_confusion_matrix

    model_path = Path(model_path)
    out_dir = Path(out_dir) if out_dir is not None else model_path.parent
    predictor = FacePredictor(model_path, pipeline=pipeline or FacePipeline.for_photos(), tta=tta)
    match_folders(images_dir, predictor.class_names)  # fail on bad folder names before any prediction
    metrics, _ = evaluate_folder(predictor, images_dir, progress=verbose == 1)
    metrics["model_path"] = str(model_path)
    metrics["tta_mode"] = tta or "none"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "folder_confusion_matrix"
    (out_dir / f"{stem}.json").write_text(
        json.dumps({"class_names": metrics["class_names"], "column_names": metrics["column_names"],
                    "matrix": metrics["confusion_matrix"]}, indent=1) + "\n"
    )
    plot_confusion_matrix(
        metrics["confusion_matrix"], metrics["class_names"], out_dir / f"{stem}.png",
        f"{Path(images_dir).name}: accuracy {metrics['accuracy']:.2%}", column_names=metrics["column_names"],
    )
    (out_dir / "folder_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if verbose:
        print(report_text(metrics), flush=True)
    return metrics
