"""Start-up, memory and throughput of the shipped prediction commands: ONNX Runtime against Keras, in one run.

For each backend (``predict.py --backend onnx`` / ``--backend keras``, the same command otherwise):

1. ``predict.py`` on one photo: ``--repeat`` cold processes (after one unmeasured run that warms the disk cache),
   median wall time and median peak RSS (``os.wait4``'s ``ru_maxrss`` of that process alone);
2. ``predict.py`` on a folder of ``--n-photos`` photos in one process: total wall time, per photo, and per photo
   once the start-up (the median of 1.) is taken off;
3. ``benchmarks/bench_video.py --backend B --no-peer``: end-to-end fps with a prediction on every frame.

Targets (issue 26) for the ONNX path: one photo <= 1.0 s and <= 300 MB; video fps not below Keras'. Run it under
``nice`` on a machine others use, and read the ratios measured in the same run rather than the absolute figures.

    nice -n 10 python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeat 3 --n-photos 50 --no-video
    python benchmarks/bench_startup.py --model runs/b/model.keras --photos ../shared/data/wild/sfew_frames
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

TARGET_WALL_S, TARGET_RSS_MB = 1.0, 300.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a .keras model with its ONNX twin (default: the bundled model)")
    parser.add_argument("--photo", type=Path, default=ROOT / "docs" / "astronaut.jpg", help="the one-photo input")
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "wild" / "lfw_web",
                        help="folder the --n-photos photos are drawn from, evenly over its sorted files")
    parser.add_argument("--n-photos", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5, help="cold one-photo processes per backend (median)")
    parser.add_argument("--video", action=argparse.BooleanOptionalAction, default=True, help="time bench_video.py")
    parser.add_argument("--backends", nargs="+", choices=("onnx", "keras"), default=["onnx", "keras"])
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.n_photos < 1:
        parser.error("--repeat and --n-photos must be >= 1")
    if not args.photo.is_file():
        parser.error(f"--photo {args.photo}: no such file")
    return args


def measured_process(command: list[str]) -> tuple[float, float, int, str]:
    """Run ``command`` from the repository root: (wall seconds, peak RSS in MB of exactly this child process
    (``os.wait4``), exit code, stdout and stderr)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    return wall, usage.ru_maxrss / 1024, process.returncode, text  # ru_maxrss is in KiB on Linux


def pick_photos(folder: Path, n: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        return files
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = sys.executable
    model = ["--model", str(args.model)] if args.model else []
    photos = pick_photos(args.photos, args.n_photos) if args.photos.is_dir() else []
    print(f"machine: {os.cpu_count()} CPUs, shared with other work (load average "
          f"{os.getloadavg()[0]:.1f}): timings are noisy; compare the backends measured here, in this run")
    print(f"one photo: {args.photo} ({args.repeat} cold processes after one warm-up)")
    if photos:
        print(f"folder: {len(photos)} photos from {args.photos}")
    else:
        print(f"folder: {args.photos} absent, skipped")
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends:
        command = [python, "predict.py", "--backend", backend, *model, "--image"]
        wall, rss, code, text = measured_process([*command, str(args.photo)])  # warms the disk cache
        if code not in (0, 2, 3):
            print(f"{backend}: predict.py failed (exit {code}):\n{text[-2000:]}")
            return 1
        runs = [measured_process([*command, str(args.photo)]) for _ in range(args.repeat)]
        row = {"wall": statistics.median(r[0] for r in runs), "rss": statistics.median(r[1] for r in runs)}
        print(f"{backend:>5} one photo: median {row['wall']:.2f} s, {row['rss']:.0f} MB peak RSS "
              f"(runs: {', '.join(f'{r[0]:.2f}' for r in runs)} s)")
        if photos:
            wall, rss, code, text = measured_process([*command, *map(str, photos)])
            faces = sum(1 for line in text.splitlines() if "  box=(" in line)
            row |= {"folder": wall, "folder_rss": rss, "per_photo": wall / len(photos),
                    "marginal": max(0.0, wall - row["wall"]) / len(photos)}
            print(f"{backend:>5} {len(photos)} photos: {wall:.1f} s total, {1000 * row['per_photo']:.0f} ms per photo, "
                  f"{1000 * row['marginal']:.0f} ms per photo after start-up; {faces} faces; {rss:.0f} MB peak RSS")
        if args.video:
            bench = [python, "benchmarks/bench_video.py", "--backend", backend, "--no-peer", *model]
            wall, rss, code, text = measured_process(bench)
            match = re.search(r"ours: ([0-9.]+) fps", text)
            if code != 0 or match is None:
                print(f"{backend}: bench_video.py failed (exit {code}):\n{text[-2000:]}")
            else:
                row["fps"] = float(match.group(1))
                print(f"{backend:>5} video: {row['fps']:.1f} fps end to end (bench_video.py; {rss:.0f} MB peak RSS)")
        results[backend] = row

    if {"onnx", "keras"} <= set(results):
        onnx, keras = results["onnx"], results["keras"]
        print("\nONNX Runtime against Keras, this run:")
        print(f"  one photo: {onnx['wall']:.2f} s vs {keras['wall']:.2f} s "
              f"({keras['wall'] / onnx['wall']:.1f}x faster), {onnx['rss']:.0f} MB vs {keras['rss']:.0f} MB "
              f"({keras['rss'] / onnx['rss']:.1f}x less)")
        if "folder" in onnx:
            print(f"  {len(photos)} photos: {onnx['folder']:.1f} s vs {keras['folder']:.1f} s; per photo after "
                  f"start-up {1000 * onnx['marginal']:.0f} ms vs {1000 * keras['marginal']:.0f} ms")
        if "fps" in onnx and "fps" in keras:
            print(f"  video: {onnx['fps']:.1f} fps vs {keras['fps']:.1f} fps")
    if "onnx" in results:
        onnx = results["onnx"]
        verdict = [
            f"one photo {'meets' if onnx['wall'] <= TARGET_WALL_S else 'MISSES'} {TARGET_WALL_S:g} s",
            f"memory {'meets' if onnx['rss'] <= TARGET_RSS_MB else 'MISSES'} {TARGET_RSS_MB:g} MB",
        ]
        if "fps" in onnx and "fps" in results.get("keras", {}):
            verdict.append(f"video fps {'not below' if onnx['fps'] >= results['keras']['fps'] else 'BELOW'} Keras'")
        print("targets (ONNX path): " + "; ".join(verdict))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
