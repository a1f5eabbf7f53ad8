"""Does HOG block normalisation matter? Current scikit-image's L2-Hys (ours) against the 2016 repository's L1.

The 2016 repository ran scikit-image 0.12, whose ``hog`` normalised each 1x1-cell block by
``block / sqrt(block.sum() ** 2 + 1e-5)``; current scikit-image (and this project's conversion) uses L2-Hys. This
computes both versions of the plain HOG (72 values) and the sliding-window HOG (2,592) from the converted faces,
alone and joined with the 136 landmark coordinates, and fits the same standardised multinomial logistic regression
on Training to each, printing PublicTest and PrivateTest accuracy side by side (a linear probe: how much class
information each feature set carries, independent of any CNN training noise).

    python experiments/bench_hog_norm.py --data fer2013_features
    python experiments/bench_hog_norm.py --data fer2013_features --limit 5000    # quicker, Training capped
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.hog import BLOCK_NORMS, hog_features  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="a convert_fer2013.py output folder (needs images.npy, labels.npy, landmarks.npy)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N Training faces")
    parser.add_argument("--c", type=float, default=0.1, help="inverse L2 penalty of the logistic regression")
    parser.add_argument("--max-iter", type=int, default=300, help="lbfgs iterations per fit")
    return parser.parse_args(argv)


def load_split(root: Path, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, 48, 48) uint8, landmarks (n, 136) float32, labels (n,) int) of one split."""
    folder = root / split
    missing = [name for name in ("images.npy", "labels.npy", "landmarks.npy") if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"error: {folder} lacks {', '.join(missing)} (convert with landmarks on)")
    images = np.load(folder / "images.npy")[:limit]
    landmarks = np.load(folder / "landmarks.npy")[:limit].reshape(len(images), -1)
    labels = np.load(folder / "labels.npy")[:limit]
    return images, landmarks, labels.argmax(1) if labels.ndim == 2 else labels


def probe(train: np.ndarray, y_train: np.ndarray, tests: list[tuple[np.ndarray, np.ndarray]], c: float,
          max_iter: int) -> list[float]:
    """Standardise on Training, fit a multinomial logistic regression, return the accuracy on each test split."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # same iteration budget for both norms
        classifier = LogisticRegression(C=c, max_iter=max_iter).fit(scaler.transform(train), y_train)
    return [float(classifier.score(scaler.transform(x), y)) for x, y in tests]


def main(argv=None) -> int:
    args = parse_args(argv)
    splits = {"Training": load_split(args.data, "Training", args.limit),
              "PublicTest": load_split(args.data, "PublicTest"), "PrivateTest": load_split(args.data, "PrivateTest")}
    print(f"Training {len(splits['Training'][0])} faces; linear probe C={args.c}, {args.max_iter} lbfgs iterations")
    print("| features | block norm | PublicTest | PrivateTest | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for kind, label in (("hog_plain", "plain HOG (72)"), ("hog_windows", "sliding-window HOG (2,592)")):
        for with_landmarks in (False, True):
            for norm in BLOCK_NORMS:
                start = time.perf_counter()
                features = {}
                for split, (images, landmarks, _) in splits.items():
                    hog = hog_features(images, plain=kind == "hog_plain", windows=kind == "hog_windows",
                                       block_norm=norm)[kind]
                    features[split] = np.hstack([landmarks, hog]) if with_landmarks else hog
                accuracy = probe(features["Training"], splits["Training"][2],
                                 [(features[s], splits[s][2]) for s in ("PublicTest", "PrivateTest")],
                                 args.c, args.max_iter)
                name = f"landmarks + {label}" if with_landmarks else label
                print(f"| {name} | {norm} | {accuracy[0]:.1%} | {accuracy[1]:.1%} | "
                      f"{time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
