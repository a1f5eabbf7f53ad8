"""Speed of the vectorised sliding-window HOG (data.hog.hog_windows) against the per-window scikit-image reference.

    python benchmarks/bench_hog.py                 # 60 random faces, 30 of them through the reference
    python benchmarks/bench_hog.py --faces 600 --reference-faces 100

Both are timed in one run, so machine load affects them alike; the ratio is the figure (target: >= 20x).
Exit code 1 when the two disagree (max abs difference > 1e-6).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=60, help="faces through the vectorised HOG (default 60)")
    parser.add_argument("--reference-faces", type=int, default=30, help="faces through the reference (default 30)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the vectorised pass (default 5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from data.hog import hog_windows, hog_windows_reference

    images = np.random.default_rng(0).integers(0, 256, (args.faces, 48, 48), dtype=np.uint8)
    hog_windows(images[:2])  # build the lookup tables outside the timing
    start = time.perf_counter()
    reference = np.stack([hog_windows_reference(image) for image in images[: args.reference_faces]])
    t_reference = (time.perf_counter() - start) / len(reference)
    start = time.perf_counter()
    for _ in range(args.repeats):
        ours = hog_windows(images)
    t_ours = (time.perf_counter() - start) / (args.repeats * len(images))
    difference = float(np.abs(ours[: len(reference)] - reference).max())
    print(f"reference (skimage per window): {t_reference * 1e3:8.3f} ms/face")
    print(f"vectorised (data.hog):          {t_ours * 1e3:8.3f} ms/face")
    print(f"speed-up: {t_reference / t_ours:.1f}x; max abs difference {difference:.2e}")
    return 0 if difference <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
