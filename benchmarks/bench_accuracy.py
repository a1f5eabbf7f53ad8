"""Accuracy and speed of our model against the published FER2013 peers, in one run on the shared data.

Evaluates, on PublicTest and PrivateTest of ``../shared/data/fer2013.csv.gz``:
  * our model (the bundled ``models/pretrained/fer_model.keras`` unless ``--model`` is given), through Keras without
    and with test-time augmentation: flip (the mean of the face's and its mirror image's probabilities) and ten-crop
    (the mean over five 46x46 crops resized to 48x48 and their mirrors; ten model calls per face);
  * its ONNX exports on ONNX Runtime with both cores, when they sit beside it: the float twin ``model.onnx`` (what
    predict.py, predict_from_video.py and serve.py run by default) and the int8 ``model.int8.onnx``;
  * every ``.hdf5`` peer in ``../shared/peers`` (mini-Xception, big-Xception): 64x64 input, ``x/255``, ``(x-0.5)*2``.
Prints a markdown table (accuracy on both splits, per-class recall on PrivateTest, images/s of the classifier at
batch 256 on this machine, and PrivateTest's expected calibration error before and after temperature scaling) and
writes it with ``--out``.

    python benchmarks/bench_accuracy.py
    python benchmarks/bench_accuracy.py --model runs/fernet/model.keras --out docs/accuracy.md
    python benchmarks/bench_accuracy.py --limit 500          # quick look on the first 500 faces of each split
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.report import write_report  # noqa: E402
from inference.classifiers import FerModelClassifier  # noqa: E402
from parameters import EMOTIONS, TTA_MODES  # noqa: E402

SHORT = {"Angry": "Ang", "Disgust": "Dis", "Fear": "Fea", "Happy": "Hap", "Sad": "Sad", "Surprise": "Sur",
         "Neutral": "Neu"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=SHARED / "data" / "fer2013.csv.gz", help="FER2013 csv(.gz)")
    parser.add_argument("--model", type=Path, default=None, help="our .keras model (default: the bundled one)")
    parser.add_argument("--peers", type=Path, nargs="*", default=None,
                        help="peer .hdf5 models (default: every .hdf5 in ../shared/peers)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N faces of each split")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    return parser.parse_args(argv)


def predict_all(classifier, faces: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """Probabilities (n, k) for faces (n, s, s) uint8, and images per second of the classifier calls."""
    classifier(faces[:batch_size])  # trace / warm up outside the clock
    start = time.perf_counter()
    probs = np.concatenate([classifier(faces[i:i + batch_size]) for i in range(0, len(faces), batch_size)])
    return probs, len(faces) / (time.perf_counter() - start)


def exported_classifiers(model_path: Path) -> list[tuple[object, str]]:
    """The model's ONNX exports as uncalibrated classifiers on both cores, each with its row name: the float twin
    ``model.onnx`` (what predict.py, predict_from_video.py and serve.py run by default) and the int8 file
    ``model.int8.onnx`` (``export.py --int8``), each when present and exported from this very ``.keras`` file."""
    from inference.backends import OnnxBackend, read_onnx_metadata, twin_problem
    from models.export import default_export_path

    found = []
    for int8 in (False, True):
        problem = twin_problem(model_path, int8=int8)  # absent, or exported from another version of the file
        if problem is not None:
            print(f"note: {model_path}: {problem}: no row for it", file=sys.stderr)
            continue
        path = default_export_path(model_path, "onnx", int8=int8)
        metadata = read_onnx_metadata(path)
        backend = OnnxBackend(path, {k: v for k, v in metadata.items() if k != "calibration"}, threads=0)
        found.append((FerModelClassifier(backend), f"ONNX Runtime {'int8' if int8 else 'float'} ({path.name})"))
    return found


def resized(faces: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if faces.shape[1] == size:
        return faces
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in faces])


def evaluate(name, classifier, splits, batch_size, tta=None, temperature=None) -> dict:
    """Accuracy per split, PrivateTest recall per class, images/s (PrivateTest, without TTA time doubling), and
    PrivateTest's expected calibration error before and after temperature scaling: ``temperature`` (the model's
    stored one) or, when None, one fitted here on PublicTest (``classifier`` must return uncalibrated probabilities).
    ``tta``: None, "flip" or "ten-crop"; images/s then counts every view's model call.
    """
    from data.augment import ten_crop_views
    from inference.calibration import apply_temperature, expected_calibration_error, fit_temperature

    size = getattr(classifier, "input_size", 48)
    names = list(classifier.class_names)
    row = {"name": name + (f" + {tta} TTA" if tta else "")}
    for split_name, split in splits.items():
        faces = resized(split.images, size)
        if tta == "ten-crop":
            views = ten_crop_views(faces)
        elif tta == "flip":
            views = [faces, np.ascontiguousarray(faces[:, :, ::-1])]
        else:
            views = [faces]
        results = [predict_all(classifier, view, batch_size) for view in views]
        probs = np.mean([p for p, _ in results], axis=0)
        rate = 1 / sum(1 / r for _, r in results)
        # Map the model's classes to FER2013 indices so subsets (e.g. 5 expressions) are scored on their classes.
        to_fer = np.array([EMOTIONS.index(c) for c in names])
        keep = np.isin(split.labels, to_fer)
        predicted = to_fer[probs.argmax(1)]
        row[split_name] = float((predicted[keep] == split.labels[keep]).mean())
        model_labels = np.array([names.index(EMOTIONS[c]) for c in split.labels[keep]], dtype=np.int64)
        if split_name == "PublicTest" and temperature is None:
            temperature = fit_temperature(probs[keep], model_labels)
        if split_name == "PrivateTest":
            row["temperature"] = temperature
            row["ece"] = expected_calibration_error(probs[keep], model_labels)
            row["ece_calibrated"] = expected_calibration_error(apply_temperature(probs[keep], temperature),
                                                               model_labels)
            row["rate"] = rate
            row["recall"] = {EMOTIONS[c]: float((predicted[split.labels == c] == c).mean())
                             for c in to_fer if (split.labels == c).any()}
    return row


def table(rows: list[dict]) -> str:
    head = ("| model | PublicTest | PrivateTest | " + " | ".join(SHORT[e] for e in EMOTIONS)
            + " | images/s | ECE raw | T | ECE calibrated |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        recall = " | ".join(f"{100 * r['recall'][e]:.1f}" if e in r["recall"] else "–" for e in EMOTIONS)
        lines.append(f"| {r['name']} | {100 * r['PublicTest']:.1f} % | {100 * r['PrivateTest']:.1f} % | {recall} | "
                     f"{r['rate']:,.0f} | {100 * r['ece']:.1f} % | {r['temperature']:.2f} | "
                     f"{100 * r['ece_calibrated']:.1f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.csv.is_file():
        print(f"error: {args.csv} not found (the shared FER2013 copy lives in ../shared/data)", file=sys.stderr)
        return 1
    from data.fer2013 import load_fer2013
    from inference.classifiers import PeerClassifier, resolve_model_path

    data = load_fer2013(args.csv)
    splits = {}
    for name in ("PublicTest", "PrivateTest"):
        split = data.splits[name]
        n = len(split) if args.limit is None else min(args.limit, len(split))
        splits[name] = type(split)(split.images[:n], split.labels[:n], split.lines[:n])
    print(f"{args.csv}: PublicTest {len(splits['PublicTest'])}, PrivateTest {len(splits['PrivateTest'])} faces")

    rows, stored = [], None
    try:
        model_path = resolve_model_path(args.model)
    except Exception as err:  # no bundled model yet: still compare the peers
        print(f"note: {err}", file=sys.stderr)
        model_path = None
    if model_path is not None:
        from models.io import load_model

        model, metadata = load_model(model_path)
        # uncalibrated probabilities; the ECE columns apply the stored temperature, or fit one on PublicTest
        ours = FerModelClassifier(model, {k: v for k, v in metadata.items() if k != "calibration"})
        stored = (metadata.get("calibration") or {}).get("temperature")
        label = f"ours: {metadata.get('model_name', '?')} ({model.count_params():,} params, {model_path.name})"
        rows.append(evaluate(label, ours, splits, args.batch_size, temperature=stored))
        for mode in TTA_MODES:
            rows.append(evaluate(label, ours, splits, args.batch_size, tta=mode, temperature=stored))
        for classifier, runtime in exported_classifiers(model_path):
            rows.append(evaluate(f"{label}, {runtime}", classifier, splits, args.batch_size, temperature=stored))
    peers = args.peers if args.peers is not None else sorted((SHARED / "peers").glob("*.hdf5"))
    for path in peers:
        peer = PeerClassifier(path)
        rows.append(evaluate(f"peer: {path.stem} ({peer.model.count_params():,} params)", peer, splits,
                             args.batch_size))
    text = table(rows) + (
        "\n\nECE: expected calibration error on PrivateTest (15 bins), before and after temperature scaling with T "
        + ("stored in the model's metadata (calibrate.py)" if stored else
           "fitted here on PublicTest") + " (peers: T fitted here on PublicTest).")
    return write_report(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
