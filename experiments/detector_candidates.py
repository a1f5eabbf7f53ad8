"""Face detection candidates on the wild sets: the share of images with a face found and ms per image, in one pass.

Each image runs dlib HOG (on a ``--detect-size`` copy, then the full image if that showed none, as the pipeline
does) and OpenCV's Haar cascade; on the images where HOG found nothing, also HOG with one upsampling step and
dlib's CNN detector on a ``--cnn-size`` copy. The cascades (``dlib+haar``, ``dlib+cnn``, ``dlib+up1``) are then
exact: their result and time are HOG's, plus the second detector's where HOG found nothing. The CNN alone is timed
on every ``--cnn-every``-th image only (it is slow). Used to choose ``FacePipeline.for_photos()``: the wild sets are
for pipeline choices.

    python experiments/detector_candidates.py --sets sfew_frames lfw_web
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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wild-dir", type=Path, default=SHARED / "data" / "wild")
    parser.add_argument("--sets", nargs="+", default=["sfew_frames", "lfw_web"])
    parser.add_argument("--detect-size", type=int, default=1024)
    parser.add_argument("--cnn-size", type=int, nargs="*", default=[480], help="CNN copy sizes (none: skip the CNN)")
    parser.add_argument("--cnn-every", type=int, default=8, help="time the CNN alone on every N-th image")
    parser.add_argument("--limit", type=int, default=None)
    return parser.parse_args(argv)


def timed(finder, grey):
    start = time.perf_counter()
    found = bool(finder.detect(grey))
    return found, time.perf_counter() - start


def _recorder(found: dict, seconds: dict):
    def add(name: str, hit: bool, sec: float) -> None:
        found.setdefault(name, []).append(hit)
        seconds.setdefault(name, []).append(sec)

    return add


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_wild import wild_files

    from inference.faces import FaceFinder, FacePipeline
    from inference.images import load_image, to_grey

    hog = FaceFinder(FacePipeline(detector="dlib", detect_size=args.detect_size))
    haar = FaceFinder(FacePipeline(detector="haar", detect_size=args.detect_size))
    up1 = FaceFinder(FacePipeline(detector="dlib", detect_size=args.detect_size, upsample=1))
    cnns = {size: FaceFinder(FacePipeline(detector="cnn", cnn_size=size)) for size in args.cnn_size}
    for set_name in args.sets:
        files = wild_files(args.wild_dir / set_name, args.limit)
        found: dict[str, list[bool]] = {}
        seconds: dict[str, list[float]] = {}
        add = _recorder(found, seconds)

        cnn_alone: dict[int, list[tuple[bool, float]]] = {size: [] for size in cnns}
        for index, (path, _) in enumerate(tqdm(files, desc=set_name, unit="img")):
            grey = to_grey(load_image(path))
            hit_hog, t_hog = timed(hog, grey)
            add("dlib", hit_hog, t_hog)
            hit_haar, t_haar = timed(haar, grey)
            add("haar", hit_haar, t_haar)
            add("dlib+haar", hit_hog or hit_haar, t_hog + (0 if hit_hog else t_haar))
            if hit_hog:
                add("dlib+up1", True, t_hog)
            else:
                hit, sec = timed(up1, grey)
                add("dlib+up1", hit, t_hog + sec)
            for size, cnn in cnns.items():
                if hit_hog:
                    add(f"dlib+cnn@{size}", True, t_hog)
                else:
                    hit, sec = timed(cnn, grey)
                    add(f"dlib+cnn@{size}", hit, t_hog + sec)
                if index % args.cnn_every == 0:
                    cnn_alone[size].append(timed(cnn, grey))
        print(f"\n**{set_name}** ({len(files)} images; HOG/Haar at {args.detect_size} px)\n")
        print("| detector | faces found | ms per image (mean) | ms per image (median) |\n| --- | --- | --- | --- |")
        for name in found:
            hits, secs = np.array(found[name]), np.array(seconds[name])
            print(f"| {name} | {100 * hits.mean():.1f} % ({hits.sum()}) | {1000 * secs.mean():.0f} | "
                  f"{1000 * np.median(secs):.0f} |")
        for size, results in cnn_alone.items():
            hits, secs = np.array([r[0] for r in results]), np.array([r[1] for r in results])
            print(f"| cnn@{size} alone (every {args.cnn_every}th image, n={len(results)}) | "
                  f"{100 * hits.mean():.1f} % | {1000 * secs.mean():.0f} | {1000 * np.median(secs):.0f} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
