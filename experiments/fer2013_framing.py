"""How FER2013 frames a face: the constants behind ``inference.faces.CROP_FRAMING`` and ``FER2013_ANCHORS``.

Runs each detector (dlib HOG, OpenCV Haar, dlib CNN) on the first ``--n`` FER2013 Training faces upscaled 4x and,
over the faces with exactly one detection, prints the median framing (image side / box width, and how many box
heights the image's centre lies above the box's centre). Then dlib's 68 landmarks on the HOG boxes give the mean
eye and mouth centres in 48x48 pixels (the alignment targets).

    python experiments/fer2013_framing.py --n 600
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=SHARED / "data" / "fer2013.csv.gz")
    parser.add_argument("--n", type=int, default=600, help="Training faces to measure (default %(default)s)")
    return parser.parse_args(argv)


def training_faces(csv: Path, n: int) -> np.ndarray:
    """The first ``n`` Training faces, (n, 48, 48) uint8."""
    import pandas as pd

    rows = pd.read_csv(csv, nrows=n * 2)
    rows = rows[rows["Usage"] == "Training"].head(n)
    return np.stack([np.array(p.split(), np.uint8).reshape(48, 48) for p in rows["pixels"]])


def main(argv=None) -> int:
    args = parse_args(argv)
    import cv2
    import dlib
    from tqdm import tqdm

    from inference.faces import FaceFinder, FacePipeline, anchor_points, make_detector

    faces = training_faces(args.csv, args.n)
    up = 4
    side = 48 * up
    detectors = {name: make_detector(name) for name in ("dlib", "haar", "cnn")}
    framings: dict[str, list[tuple[float, float]]] = {name: [] for name in detectors}
    anchors = []
    shape_predictor = FaceFinder(FacePipeline(align=True))._landmarks
    for face in tqdm(faces, desc="faces", unit="face"):
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        for name, detect in detectors.items():
            boxes = detect(big)
            if len(boxes) != 1:
                continue
            x, y, w, h = boxes[0]
            framings[name].append((side / w, (y + h / 2 - side / 2) / h))
            if name == "dlib":
                shape = shape_predictor(big, dlib.rectangle(x, y, x + w, y + h))
                points = np.array([(p.x, p.y) for p in shape.parts()], np.float64) / up
                anchors.append(anchor_points(points))
    print(f"{len(faces)} FER2013 Training faces, upscaled {up}x to {side} px")
    for name, values in framings.items():
        if values:
            scale, shift = np.median(np.array(values), axis=0)
            print(f"  {name}: one face in {len(values)}; framing (scale, shift) = ({scale:.3f}, {shift:.3f})")
    mean = np.mean(anchors, axis=0)
    print(f"anchors (48 px) over {len(anchors)} faces: left eye {mean[0].round(2)}, right eye {mean[1].round(2)}, "
          f"mouth {mean[2].round(2)}; std {np.std(anchors, axis=0).round(2).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
