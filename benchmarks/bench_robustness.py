"""How much each photo-like degradation costs a model on FER2013 PublicTest (the selection split).

Real photos differ from FER2013's faces by blur, small far faces, sensor noise, JPEG, exposure and the framing of
the detector's box. This applies each degradation alone to every PublicTest face (fixed seed, the same faces for
every model), then the training augmentation's mix (``data.augment.random_photometric`` at P=0.5), and prints the
accuracy of each model per condition: a cheap, repeatable proxy for the wild sets that is allowed for selection.

    python benchmarks/bench_robustness.py
    python benchmarks/bench_robustness.py --models models/pretrained/fer_model.keras runs/photo/model.keras \
        ../shared/peers/fer2013_mini_XCEPTION.102-0.66.hdf5 --out docs/robustness.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.report import write_report  # noqa: E402


def _blur(faces, rng):
    import cv2

    return np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in faces])


def _small(faces, rng):
    import cv2

    return np.stack([cv2.resize(cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA), (48, 48)) for f in faces])


def _noise(faces, rng):
    return faces + rng.normal(0.0, 10.0, faces.shape).astype(np.float32)


def _jpeg(faces, rng):
    import cv2

    def encode(f):
        ok, data = cv2.imencode(".jpg", np.clip(f, 0, 255).round().astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 20])
        return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32)

    return np.stack([encode(f) for f in faces])


def _dark(faces, rng):
    return 255.0 * (faces / 255.0) ** 1.8 * 0.7


def _low_contrast(faces, rng):
    mean = faces.mean(axis=(1, 2), keepdims=True)
    return (faces - mean) * 0.5 + mean


def _box_jitter(faces, rng):
    from data.augment import random_box_jitter

    return random_box_jitter(faces, rng, 1.0, max_shift=0.1, scale_range=(0.8, 1.25))


def _mix(faces, rng):
    from data.augment import random_photometric

    return random_photometric(faces, rng, 0.5)


CONDITIONS = {
    "clean": lambda faces, rng: faces,
    "blur (sigma 1.2)": _blur,
    "16 px face": _small,
    "noise (sigma 10)": _noise,
    "JPEG q20": _jpeg,
    "dark (gamma 1.8, x0.7)": _dark,
    "contrast x0.5": _low_contrast,
    "box jitter (+-10 %, x0.8-1.25)": _box_jitter,
    "training mix (P=0.5)": _mix,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=SHARED / "data" / "fer2013.csv.gz", help="FER2013 csv(.gz)")
    parser.add_argument("--models", type=Path, nargs="+", default=None,
                        help="models (.keras of this project or peer .hdf5; default: the bundled model)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N PublicTest faces")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random degradations")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.csv.is_file():
        print(f"error: {args.csv} not found (the shared FER2013 copy lives in ../shared/data)", file=sys.stderr)
        return 1
    from benchmarks.bench_accuracy import predict_all, resized
    from data.fer2013 import load_fer2013
    from inference.classifiers import FerModelClassifier, PeerClassifier, resolve_model_path
    from models.io import load_model
    from parameters import EMOTIONS

    public = load_fer2013(args.csv).splits["PublicTest"]
    n = len(public) if args.limit is None else min(args.limit, len(public))
    faces, labels = public.images[:n].astype(np.float32), public.labels[:n]
    degraded = {name: np.clip(make(faces, np.random.default_rng(args.seed)), 0, 255).round().astype(np.uint8)
                for name, make in CONDITIONS.items()}
    paths = args.models or [resolve_model_path(None)]
    columns = []
    for path in paths:
        if path.suffix.lower() in (".h5", ".hdf5"):
            classifier = PeerClassifier(path)
        else:
            model, metadata = load_model(path)
            classifier = FerModelClassifier(model, metadata)
        to_fer = np.array([EMOTIONS.index(c) for c in classifier.class_names])
        size = getattr(classifier, "input_size", 48)
        accuracy = {}
        for name, images in degraded.items():
            probs, _ = predict_all(classifier, resized(images, size), 256)
            accuracy[name] = float((to_fer[probs.argmax(1)] == labels).mean())
        columns.append((f"{path.parent.name}/{path.name}", accuracy))
    head = "| PublicTest condition | " + " | ".join(name for name, _ in columns) + " |"
    lines = [head, "|" + " --- |" * (len(columns) + 1)]
    for condition in CONDITIONS:
        lines.append(f"| {condition} | " + " | ".join(f"{100 * acc[condition]:.1f} %" for _, acc in columns) + " |")
    text = "\n".join(lines) + f"\n\n{n} PublicTest faces, seed {args.seed}."
    return write_report(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
