"""Real photos end to end: our bundled model against the published peers, all through the same face pipeline.

For each wild set (``../shared/data/wild/<set>/<class>/*.jpg``) every image is read, turned grey, its faces are
detected ONCE (``inference.faces``, the flags and defaults of predict.py) and the largest face is framed for each
model's input size and classified by every model. An image where no face is found counts as wrong. Printed per set,
one markdown table: accuracy, macro-F1 (over the 7 classes; "no face" is a wrong answer of no class), per-class
recall, share of images with a face found, ms per image for detection (+ framing/alignment) and for
classification (one model call per image), and each model's FER2013 PrivateTest accuracy through the same code
path as ``predict.py --assume-face`` (the whole 48x48 image is the face).

When the ``fer`` package is importable (``pip install --no-deps fer``; not a requirement of this project) it runs
as a further row with its own pipeline end to end (OpenCV Haar detector, no MTCNN, its own crop and model): the
tool a user would pick instead. Without it the row is skipped with a note.

    python benchmarks/bench_wild.py                                     # predict.py's photo pipeline
    python benchmarks/bench_wild.py --detector dlib --detect-size 1024 --no-align     # an older pipeline
    python benchmarks/bench_wild.py --sets sfew_frames --limit 100 --no-fer2013       # a quick look
    python benchmarks/bench_wild.py --detect-only --detector dlib+cnn                  # detection rates only
    python benchmarks/bench_wild.py --tta flip ten-crop                                # + rows with TTA
    python benchmarks/bench_wild.py --models A.keras B.keras --cache /tmp/wild_faces   # detect once, compare fast

Timings are wall-clock on this machine; on a shared machine they are noisy, compare rows of one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.report import write_report  # noqa: E402
from inference.faces import FacePipeline, add_face_arguments, pipeline_from_args  # noqa: E402
from parameters import EMOTIONS, TTA_MODES  # noqa: E402

SETS = ("sfew_frames", "lfw_web")
SHORT = {"Angry": "Ang", "Disgust": "Dis", "Fear": "Fea", "Happy": "Hap", "Sad": "Sad", "Surprise": "Sur",
         "Neutral": "Neu"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wild-dir", type=Path, default=SHARED / "data" / "wild", help="folder of the wild sets")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS), help="wild sets (default: both)")
    parser.add_argument("--models", type=Path, nargs="*", default=None,
                        help="models to compare (.keras of this project or peer .hdf5); default: the bundled "
                             "model and every .hdf5 in ../shared/peers")
    parser.add_argument("--fer2013-csv", type=Path, default=SHARED / "data" / "fer2013.csv.gz",
                        help="FER2013 csv(.gz) for the PrivateTest column (default: the shared copy)")
    parser.add_argument("--fer2013", action=argparse.BooleanOptionalAction, default=True,
                        help="compute each model's PrivateTest accuracy (--assume-face path)")
    parser.add_argument("--fer", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the pip 'fer' package end to end when it is importable")
    parser.add_argument("--detect-only", action="store_true", help="only detection: share found and ms per image")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use N images per set, evenly spread over the sorted list (so every class keeps its "
                             "share)")
    parser.add_argument("--out", type=Path, help="also write the markdown tables here")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep each set's detected and framed faces in DIR and reuse them on the next run with the "
                             "same pipeline and images: comparing models then takes seconds instead of minutes (the "
                             "detect ms column repeats the run that filled the cache)")
    parser.add_argument("--equalize", nargs="+", choices=EQUALIZERS, default=[], metavar="MODE",
                        help="also a row per model with each face's grey levels equalised first: hist (OpenCV's "
                             "global histogram equalisation) or clahe (clip limit 2, 4x4 tiles)")
    parser.add_argument("--tta", nargs="+", choices=TTA_MODES, default=[], metavar="MODE",
                        help=f"also a row per model and test-time augmentation mode ({', '.join(TTA_MODES)}), on "
                             "the same detected faces")
    add_face_arguments(parser, FacePipeline.for_photos(), model=False)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit} must be >= 1")
    missing = [s for s in args.sets if not (args.wild_dir / s).is_dir()]
    if missing:
        parser.error(f"{args.wild_dir}: no folder {missing[0]} (is ../shared present?)")
    return args


# ------------------------------------------------------------------------------------------------ data


def wild_files(set_dir: Path, limit: int | None) -> list[tuple[Path, int]]:
    """(path, FER2013 class index) for every image of ``set_dir/<class>/``; ``limit`` evenly spaced ones."""
    from inference.folder_eval import match_folders
    from inference.images import IMAGE_SUFFIXES

    files = [
        (path, label)
        for folder, label in match_folders(set_dir, EMOTIONS).items()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if limit is not None and limit < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


@dataclass
class Row:
    """Predictions of one model on one set: FER2013 class index per image (-1: no face) and the time spent."""

    name: str
    predicted: list[int] = field(default_factory=list)
    classify_s: float = 0.0
    detect_s: float | None = None  # own detection time (the fer package); None: the shared pipeline's
    private_test: float | None = None


def scores(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, macro-F1 over the 7 classes and recall per class; predicted -1 (no face) is wrong for every class."""
    recall, f1 = {}, []
    for c, name in enumerate(EMOTIONS):
        true, hit = labels == c, predicted == c
        tp = int((true & hit).sum())
        if true.any():
            recall[name] = tp / int(true.sum())
        precision = tp / int(hit.sum()) if hit.any() else 0.0
        rec = tp / int(true.sum()) if true.any() else 0.0
        f1.append(2 * precision * rec / (precision + rec) if precision + rec else 0.0)
    return {"accuracy": float((labels == predicted).mean()), "macro_f1": float(np.mean(f1)), "recall": recall}


# ------------------------------------------------------------------------------------------------ models


EQUALIZERS = ("hist", "clahe")


class Equalized:
    """A FaceClassifier whose faces are histogram-equalised (``hist``) or CLAHE-equalised (``clahe``) first."""

    def __init__(self, classifier, mode: str):
        import cv2

        self.classifier, self.class_names, self.input_size = classifier, classifier.class_names, classifier.input_size
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
        self.equalize = cv2.equalizeHist if mode == "hist" else clahe.apply

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self.classifier(np.stack([self.equalize(face) for face in faces]) if len(faces) else faces)


def model_labels(paths: list[Path]) -> list[str]:
    """One distinct row label per model: ``bundled (fer_model.keras)``, ``mini_XCEPTION (fer2013_mini_XCEPTION...)``;
    train.py's ``RUN/model.keras`` is named after its run folder, and paths that would still share a label get their
    folder in front (``a/x (x.keras)``, ``b/x (x.keras)``), so no row or ensemble member is silently merged."""
    from inference.classifiers import DEFAULT_MODEL_PATH

    def stem(path: Path) -> str:
        resolved = path.resolve()
        if resolved == DEFAULT_MODEL_PATH:
            return "bundled"
        name = path.stem.split(".")[0]
        return resolved.parent.name if name == "model" else name.replace("fer2013_", "")

    def with_folder(path: Path) -> str:
        name, folder = stem(path), path.resolve().parent.name
        return f"{name} ({path.name})" if name == folder else f"{folder}/{name} ({path.name})"

    paths = [Path(p) for p in paths]
    labels = [f"{stem(p)} ({p.name})" for p in paths]
    for widen in (with_folder, lambda path: f"{stem(path)} ({path})"):  # then the whole path
        clashing = {label for label in labels if labels.count(label) > 1}
        labels = [widen(p) if label in clashing else label for p, label in zip(paths, labels, strict=True)]
    return labels


def load_models(paths: list[Path] | None, tta: list[str] = (), equalize: list[str] = ()) -> list[tuple[str, object]]:
    """(name, classifier) for the given models, default the bundled one and the shared peers; then each model again
    with each ``tta`` mode."""
    from inference.classifiers import DEFAULT_MODEL_PATH, load_classifier, with_tta

    if paths is None:
        paths = [DEFAULT_MODEL_PATH, *sorted((SHARED / "peers").glob("*.hdf5"))]
    models = []
    for path, label in zip(paths, model_labels(paths), strict=True):
        classifier = load_classifier(path)
        names = list(classifier.class_names)
        if names != list(EMOTIONS):
            raise SystemExit(f"error: {path}: classes {names}; this benchmark needs FER2013's 7 classes in order")
        models.append((label, classifier))
    augmented = [(f"{name} + {mode} TTA", with_tta(classifier, mode)) for name, classifier in models for mode in tta]
    equalized = [(f"{name} + {mode}", Equalized(classifier, mode)) for name, classifier in models for mode in equalize]
    return models + augmented + equalized


def private_test_faces(csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """FER2013 PrivateTest (n, 48, 48) uint8 faces and (n,) labels."""
    from data.fer2013 import load_fer2013

    split = load_fer2013(csv).splits["PrivateTest"]
    return split.images, np.asarray(split.labels)


def private_test_accuracy(classifier, faces: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    """Accuracy through predict.py --assume-face's path: each whole image is the face, framed by FacePredictor."""
    from inference.predictor import FacePredictor

    predictor = FacePredictor(classifier=classifier, pipeline=FacePipeline(assume_face=True))
    crops = np.stack([predictor.crop_faces(face, predictor.faces.detect(face))[0] for face in faces])
    probs = np.concatenate([predictor.predict_faces(crops[i:i + batch]) for i in range(0, len(crops), batch)])
    return float((probs.argmax(1) == labels).mean())


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class FramedFaces:
    """The largest face of each image framed at each input side: ``crops[side]`` (n, side, side) uint8 (zeros where
    no face was found), ``found`` (n,) bool, and the seconds spent detecting (all images) and framing (the faces)."""

    crops: dict[int, np.ndarray]
    found: np.ndarray
    detect_s: float
    frame_s: float


def cache_file(cache: Path, set_name: str, files, pipeline: FacePipeline) -> Path:
    """``cache/<set>-<key>.npz``: the key hashes the pipeline and every image's path, size and label, so a change to
    any of them misses the cache instead of reading stale faces."""
    import hashlib

    digest = hashlib.sha256(repr(pipeline).encode())
    for path, label in files:
        digest.update(f"{path.name}|{path.parent.name}|{path.stat().st_size}|{label}\n".encode())
    return cache / f"{set_name}-{digest.hexdigest()[:16]}.npz"


def read_cache(path: Path) -> FramedFaces | None:
    """The faces kept in ``path`` (at the sides it holds), or None when there is no such file."""
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return FramedFaces({int(key.removeprefix("crops_")): saved[key] for key in saved if key.startswith("crops_")},
                           saved["found"], float(saved["detect_s"]), float(saved["frame_s"]))


def frame_faces(files, pipeline: FacePipeline, sizes: list[int], cache: Path | None = None,
                set_name: str = "set") -> FramedFaces:
    """Detect the faces of every image once, frame the largest at every side in ``sizes`` (aligned on its
    landmarks when the pipeline aligns). With ``cache`` (a folder), the result is read from there when this set was
    framed before with this pipeline at these sides, else computed (at these sides and those the cache held) and
    written there."""
    from tqdm import tqdm

    from inference.faces import FaceFinder
    from inference.images import load_image, to_grey

    path = None if cache is None else cache_file(cache, set_name, files, pipeline)
    kept = None if path is None else read_cache(path)
    if kept is not None:
        if all(size in kept.crops for size in sizes):
            return kept
        sizes = sorted({*sizes, *kept.crops})  # framed again at every side, so the file keeps the ones it had
    finder = FaceFinder(pipeline)
    crops = {size: np.zeros((len(files), size, size), np.uint8) for size in sizes}
    found = np.zeros(len(files), bool)
    detect_s = frame_s = 0.0
    for i, (image_path, _) in enumerate(tqdm(files, desc="faces", unit="img", leave=False)):
        grey = to_grey(load_image(image_path))
        start = time.perf_counter()
        faces = finder.detect(grey)
        detect_s += time.perf_counter() - start
        if not faces:
            continue
        found[i] = True
        largest = max(faces, key=lambda f: f.box[2] * f.box[3])  # the largest face speaks for the photo
        start = time.perf_counter()
        landmarks = finder.landmarks(grey, largest) if pipeline.align else None  # once for every crop size
        for size in sizes:
            crops[size][i] = finder.crop(grey, largest, size, landmarks)
        frame_s += time.perf_counter() - start
    framed = FramedFaces(crops, found, detect_s, frame_s)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.partial.npz")
        np.savez_compressed(tmp, found=found, detect_s=detect_s, frame_s=frame_s,
                            **{f"crops_{size}": crop for size, crop in crops.items()})
        tmp.replace(path)
    return framed


def run_pipeline(files, pipeline: FacePipeline, models, detect_only: bool, cache: Path | None = None,
                 set_name: str = "set") -> tuple[dict, list[Row]]:
    """Detect once per image, frame the largest face for each input size, classify with every model (one call per
    image with a face, as a user's photo would be)."""
    from inference.faces import FaceFinder
    from inference.images import load_image, to_grey

    rows = [Row(name) for name, _ in models]
    n = len(files)
    if detect_only:
        finder, detect_s, found = FaceFinder(pipeline), 0.0, 0
        for path, _ in files:
            grey = to_grey(load_image(path))
            start = time.perf_counter()
            found += bool(finder.detect(grey))
            detect_s += time.perf_counter() - start
        return {"found": found, "n": n, "detect_ms": 1000 * detect_s / n, "frame_ms": 0.0}, rows
    framed = frame_faces(files, pipeline, sorted({c.input_size for _, c in models}), cache, set_name)
    for row, (_, classifier) in zip(rows, models, strict=True):
        crops = framed.crops[classifier.input_size]
        classifier(crops[:1])  # trace the model outside the clock
        for i in range(n):
            if not framed.found[i]:
                row.predicted.append(-1)
                continue
            start = time.perf_counter()
            probabilities = classifier(crops[i:i + 1])
            row.classify_s += time.perf_counter() - start
            row.predicted.append(int(np.argmax(probabilities[0])))
    found = int(framed.found.sum())
    stats = {"found": found, "n": n, "detect_ms": 1000 * framed.detect_s / n,
             "frame_ms": 1000 * framed.frame_s / max(1, found)}
    return stats, rows


def run_fer_package(files, fer) -> Row:
    """The pip ``fer`` package end to end with its own Haar detector, crop and model."""
    from tqdm import tqdm

    from inference.images import load_image, to_bgr

    names = [name.lower() for name in EMOTIONS]
    row = Row("fer package (Haar + its own model)", detect_s=0.0)
    for path, _ in tqdm(files, desc="fer", unit="img", leave=False):
        bgr = to_bgr(load_image(path))
        start = time.perf_counter()
        boxes = fer.find_faces(bgr)
        found = time.perf_counter()
        row.detect_s += found - start
        if len(boxes) == 0:
            row.predicted.append(-1)
            continue
        largest = max(boxes, key=lambda b: b[2] * b[3])
        result = fer.detect_emotions(bgr, face_rectangles=[largest])
        row.classify_s += time.perf_counter() - found
        emotions = result[0]["emotions"] if result else None
        row.predicted.append(names.index(max(emotions, key=emotions.get)) if emotions else -1)
    return row


def fer_private_test(fer, faces: np.ndarray, labels: np.ndarray) -> float:
    """The fer package on PrivateTest with the whole 48x48 image as the face box (its --assume-face)."""
    import cv2

    names = [name.lower() for name in EMOTIONS]
    hits = 0
    for face, label in zip(faces, labels, strict=True):
        result = fer.detect_emotions(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), face_rectangles=[(0, 0, 48, 48)])
        emotions = result[0]["emotions"]
        hits += names.index(max(emotions, key=emotions.get)) == label
    return hits / len(labels)


def load_fer_package():
    """fer's FER with the Haar detector, or None (with the reason) when the package is absent or broken."""
    try:
        import logging

        from fer.fer import FER

        logging.getLogger("fer").setLevel(logging.WARNING)
        return FER(mtcnn=False), None
    except Exception as err:  # absent, or present but incompatible: the benchmark goes on without it
        return None, f"{type(err).__name__}: {err}"


# ------------------------------------------------------------------------------------------------ output


def table(set_name: str, labels: np.ndarray, stats: dict, rows: list[Row]) -> str:
    head = ("| model | FER2013 PrivateTest | accuracy | macro-F1 | faces found | detect ms | classify ms | "
            + " | ".join(SHORT[e] for e in EMOTIONS) + " |")
    lines = [f"**{set_name}** ({stats['n']} images)", "", head, "|" + " --- |" * (head.count("|") - 1)]
    for row in rows:
        predicted = np.array(row.predicted)
        s = scores(labels, predicted)
        found = int((predicted >= 0).sum()) if row.detect_s is not None else stats["found"]
        detect = 1000 * row.detect_s / stats["n"] if row.detect_s is not None else stats["detect_ms"]
        detect_text = f"{detect:.1f}" if row.detect_s is not None else f"{detect:.1f} + {stats['frame_ms']:.1f}"
        private = "–" if row.private_test is None else f"{100 * row.private_test:.1f} %"
        recall = " | ".join(f"{100 * s['recall'][e]:.0f}" if e in s["recall"] else "–" for e in EMOTIONS)
        lines.append(
            f"| {row.name} | {private} | {100 * s['accuracy']:.1f} % | {100 * s['macro_f1']:.1f} % | "
            f"{100 * found / stats['n']:.1f} % ({found}) | {detect_text} | "
            f"{1000 * row.classify_s / max(1, found):.1f} | {recall} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    pipeline = pipeline_from_args(args)
    print(f"pipeline: {pipeline}")
    models = [] if args.detect_only else load_models(args.models, args.tta, args.equalize)
    fer, why_not = (None, "not asked (--no-fer)") if not args.fer or args.detect_only else load_fer_package()
    if fer is None and not args.detect_only:
        print(f"note: fer package row skipped: {why_not}")

    private = {}
    if args.fer2013 and not args.detect_only:
        if not args.fer2013_csv.is_file():
            print(f"note: {args.fer2013_csv} not found: no PrivateTest column")
        else:
            faces, labels = private_test_faces(args.fer2013_csv)
            for name, classifier in models:
                private[name] = private_test_accuracy(classifier, faces, labels)
            if fer is not None:
                private["fer"] = fer_private_test(fer, faces, labels)

    texts = []
    for set_name in args.sets:
        files = wild_files(args.wild_dir / set_name, args.limit)
        labels = np.array([label for _, label in files])
        stats, rows = run_pipeline(files, pipeline, models, args.detect_only, args.cache, set_name)
        for row in rows:
            row.private_test = private.get(row.name)
        if fer is not None:
            rows.append(run_fer_package(files, fer))
            rows[-1].private_test = private.get("fer")
        if args.detect_only:
            text = (f"**{set_name}**: face found in {stats['found']} of {stats['n']} images "
                    f"({100 * stats['found'] / stats['n']:.1f} %), detection {stats['detect_ms']:.1f} ms per image")
        else:
            text = table(set_name, labels, stats, rows)
        print(text + "\n", flush=True)
        texts.append(text)
    footer = (f"detect ms: detection per image + framing{' and alignment' if pipeline.align else ''} per face; "
              f"classify ms: one model call per image with a face; wall time {time.perf_counter() - began:.0f} s")
    print(footer)
    return write_report(f"pipeline: {pipeline}\n\n" + "\n\n".join(texts) + "\n\n" + footer, args.out, show=False)


if __name__ == "__main__":
    raise SystemExit(main())
