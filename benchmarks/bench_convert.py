"""Conversion speed: the original per-image path against convert_fer2013.py, on the same N real faces.

(a) reference, written the 2016 way in one process: per csv row, parse the pixel string, run dlib's predictor,
    compute plain HOG and the sliding-window HOG as a loop of ``skimage.feature.hog`` calls per window;
(b) ours: ``data.convert.convert`` end to end (parse, landmarks over --workers processes, batched HOG, write).
Both read the first N rows of the csv. Prints each rate, the ratio and the projected time for all 35,887 faces.

Examples:
    python benchmarks/bench_convert.py                       # 2,000 faces from ../shared/data/fer2013.csv.gz
    python benchmarks/bench_convert.py -n 500 --workers 2
    python benchmarks/bench_convert.py --full                # also time a real conversion of the whole file
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_SIZE = 35_887
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "fer2013.csv.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"FER2013 csv (default: {DEFAULT_CSV})")
    parser.add_argument("-n", "--images", type=int, default=2000, help="faces to convert (default: 2000)")
    parser.add_argument("--workers", type=int, default=None, help="processes for ours (default: usable cores)")
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=False,
                        help="also convert the whole file with our converter and report the measured time")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        parser.error(f"--csv {args.csv}: no such file (the shared data lives in ../shared/data)")
    if args.images < 1:
        parser.error("-n must be >= 1")
    return args


def reference_convert(csv: Path, n: int) -> int:
    """The original converter's per-image loop over the first ``n`` rows; returns the number of faces done."""
    import dlib
    import numpy as np
    import pandas as pd
    from skimage.feature import hog

    from data.hog import hog_windows_reference
    from data.landmarks import FACE_RECT, default_shape_predictor_path

    predictor = dlib.shape_predictor(str(default_shape_predictor_path()))
    frame = pd.read_csv(csv, nrows=n)
    images, landmarks, hog_features, hog_plain = [], [], [], []
    for pixels in frame["pixels"]:
        image = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
        shape = predictor(image, dlib.rectangle(*FACE_RECT))
        landmarks.append(np.array([[p.x, p.y] for p in shape.parts()]))
        hog_plain.append(hog(image, orientations=8, pixels_per_cell=(16, 16), cells_per_block=(1, 1)))
        hog_features.append(hog_windows_reference(image))
        images.append(image)
    arrays = [np.array(a) for a in (images, landmarks, hog_features, hog_plain)]  # as the original saved them
    return len(arrays[0])


def ours_convert(csv: Path, n: int | None, workers: int) -> int:
    from data.convert import ConvertOptions, convert

    with tempfile.TemporaryDirectory() as tmp:
        meta = convert(csv, Path(tmp) / "out", ConvertOptions(limit=n, workers=workers))
    return sum(sum(c.values()) for c in meta["counts"].values())


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from data.landmarks import default_workers

    workers = args.workers or default_workers()
    print(f"{args.images} faces from {args.csv}; ours with {workers} worker process(es)")

    start, cpu = time.perf_counter(), _cpu_seconds()
    n_ref = reference_convert(args.csv, args.images)
    t_ref, cpu_ref = time.perf_counter() - start, _cpu_seconds() - cpu
    start, cpu = time.perf_counter(), _cpu_seconds()
    n_ours = ours_convert(args.csv, args.images, workers)
    t_ours, cpu_ours = time.perf_counter() - start, _cpu_seconds() - cpu
    if n_ref != n_ours:
        print(f"error: reference converted {n_ref} faces, ours {n_ours}", file=sys.stderr)
        return 1

    rate_ref, rate_ours = n_ref / t_ref, n_ours / t_ours
    print(f"reference (per-image dlib + per-window skimage hog, 1 process): {t_ref:7.2f} s  {rate_ref:8.1f} faces/s"
          f"  -> projected {FULL_SIZE / rate_ref:7.1f} s for {FULL_SIZE:,} faces")
    print(f"ours (convert_fer2013, {workers} workers):{' ' * 24}{t_ours:7.2f} s  {rate_ours:8.1f} faces/s"
          f"  -> projected {FULL_SIZE / rate_ours:7.1f} s for {FULL_SIZE:,} faces")
    print(f"speed-up: {rate_ours / rate_ref:.1f}x (wall clock)")
    print(f"CPU time per face: reference {cpu_ref / n_ref * 1e3:.2f} ms, ours {cpu_ours / n_ours * 1e3:.2f} ms "
          f"(all processes; wall time also depends on other load on the machine)")
    if args.full:
        start = time.perf_counter()
        n_full = ours_convert(args.csv, None, workers)
        print(f"measured full conversion: {n_full:,} faces in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
