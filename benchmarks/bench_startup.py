"""Start-up, memory and throughput of the shipped prediction commands: ONNX Runtime against Keras, in one run.

For each backend (``predict.py --backend onnx`` / ``--backend keras``, the same command otherwise):

1. ``predict.py`` on one photo: ``--repeat`` cold processes (after one unmeasured run that warms the disk cache),
   median wall time and median peak RSS (``os.wait4``'s ``ru_maxrss`` of that process alone);
2. ``predict.py`` on a folder of ``--n-photos`` photos in one process: total wall time, per photo, and per photo
   once the start-up (the median of 1.) is taken off;
3. ``benchmarks/bench_video.py --backend B --no-peer``: end-to-end fps with a prediction on every frame, and the
   model call's share of it (the one stage the backend changes).

Runs of the two backends alternate (onnx, keras, onnx, keras, ...) so that the machine's changing load hits both.
Each process's CPU time (user + system) is printed beside its wall time: on a loaded machine the wall time mostly
measures the wait for a core, the CPU time what the command costs.

Targets (issue 26) for the ONNX path: one photo <= 1.0 s and <= 300 MB; video fps not below Keras'. Run it under
``nice`` on a machine others use, and read the ratios measured in the same run rather than the absolute figures.

    nice -n 10 python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --backends onnx int8 --repeat 3      # the float twin against the int8 export
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
    parser.add_argument("--folder-repeat", type=int, default=2, help="folder runs per backend (median)")
    parser.add_argument("--video-repeat", type=int, default=3, help="bench_video.py runs per backend (median)")
    parser.add_argument("--video", action=argparse.BooleanOptionalAction, default=True, help="time bench_video.py")
    parser.add_argument("--backends", nargs="+", choices=("onnx", "keras", "int8"), default=["onnx", "keras"],
                        help="predict.py --backend values to compare (int8: the model's MODEL.int8.onnx)")
    args = parser.parse_args(argv)
    if min(args.repeat, args.folder_repeat, args.video_repeat, args.n_photos) < 1:
        parser.error("--repeat, --folder-repeat, --video-repeat and --n-photos must be >= 1")
    if not args.photo.is_file():
        parser.error(f"--photo {args.photo}: no such file")
    return args


def measured_process(command: list[str]) -> tuple[float, float, int, str, float]:
    """Run ``command`` from the repository root: (wall seconds, peak RSS in MB of exactly this child process
    (``os.wait4``), exit code, stdout and stderr, CPU seconds (user + system) of that process)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, process.returncode, text, cpu  # ru_maxrss is in KiB on Linux


def pick_photos(folder: Path, n: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        return files
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def interleaved(commands: dict[str, list[str]], repeat: int) -> dict[str, list[tuple]]:
    """``repeat`` rounds of one run per backend, alternating, so a change in the machine's load hits both alike."""
    runs: dict[str, list[tuple]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(measured_process(command))
    return runs


def failed(runs: dict[str, list[tuple]], ok_codes: tuple[int, ...], what: str) -> bool:
    for name, results in runs.items():
        for _, _, code, text, _ in results:
            if code not in ok_codes:
                print(f"{name}: {what} failed (exit {code}):\n{text[-2000:]}")
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = sys.executable
    model = ["--model", str(args.model)] if args.model else []
    photos = pick_photos(args.photos, args.n_photos) if args.photos.is_dir() else []
    print(f"machine: {os.cpu_count()} CPUs, shared with other work (load average "
          f"{os.getloadavg()[0]:.1f}): timings are noisy; backends alternate run by run, compare them in this run")
    predict = {b: [python, "predict.py", "--backend", b, *model, "--image"] for b in args.backends}
    ok = (0, 2, 3)  # predict.py: 0 all faces found, 2 or 3 (by version) some image without a face
    results: dict[str, dict[str, float]] = {b: {} for b in args.backends}

    print(f"\none photo: {args.photo}, {args.repeat} cold processes per backend after one warm-up each")
    if failed(interleaved({b: [*c, str(args.photo)] for b, c in predict.items()}, 1), ok, "predict.py"):
        return 1
    runs = interleaved({b: [*c, str(args.photo)] for b, c in predict.items()}, args.repeat)
    if failed(runs, ok, "predict.py"):
        return 1
    for backend, rows in runs.items():
        results[backend] |= {"wall": statistics.median(r[0] for r in rows),
                             "rss": statistics.median(r[1] for r in rows), "cpu": statistics.median(r[4] for r in rows)}
        print(f"{backend:>5}: median {results[backend]['wall']:.2f} s wall, {results[backend]['cpu']:.2f} s CPU, "
              f"{results[backend]['rss']:.0f} MB peak RSS (runs: {', '.join(f'{r[0]:.2f}' for r in rows)} s)")

    if photos:
        print(f"\nfolder: {len(photos)} photos from {args.photos} in one process, "
              f"{args.folder_repeat} runs per backend")
        runs = interleaved({b: [*c, *map(str, photos)] for b, c in predict.items()}, args.folder_repeat)
        if failed(runs, ok, "predict.py"):
            return 1
        for backend, rows in runs.items():
            row = results[backend]
            row["folder"] = statistics.median(r[0] for r in rows)
            row["marginal"] = max(0.0, row["folder"] - row["wall"]) / len(photos)
            faces = sum(1 for line in rows[0][3].splitlines() if "  box=(" in line)
            print(f"{backend:>5}: {row['folder']:.1f} s total, {1000 * row['folder'] / len(photos):.0f} ms per photo, "
                  f"{1000 * row['marginal']:.0f} ms per photo after start-up; {faces} faces; "
                  f"{statistics.median(r[1] for r in rows):.0f} MB peak RSS")
    else:
        print(f"\nfolder: {args.photos} absent, skipped")

    if args.video:
        print(f"\nvideo: benchmarks/bench_video.py --no-peer (a prediction on every frame), {args.video_repeat} runs "
              "per backend")
        bench = {b: [python, "benchmarks/bench_video.py", "--backend", b, "--no-peer", *model] for b in args.backends}
        runs = interleaved(bench, args.video_repeat)
        if failed(runs, (0,), "bench_video.py"):
            return 1
        for backend, rows in runs.items():
            fps = [float(re.search(r"ours: ([0-9.]+) fps", r[3]).group(1)) for r in rows]
            model_ms = [float(re.search(r"classify ([0-9.]+)", r[3]).group(1)) for r in rows]
            results[backend] |= {"fps": statistics.median(fps), "model_ms": statistics.median(model_ms)}
            print(f"{backend:>5}: median {results[backend]['fps']:.1f} fps end to end (runs: "
                  f"{', '.join(f'{v:.1f}' for v in fps)}); model call {results[backend]['model_ms']:.1f} ms per frame")

    if {"onnx", "keras"} <= set(results):
        onnx, keras = results["onnx"], results["keras"]
        print("\nONNX Runtime against Keras, this run:")
        print(f"  one photo: {onnx['wall']:.2f} s vs {keras['wall']:.2f} s wall ({keras['wall'] / onnx['wall']:.1f}x "
              f"faster), {onnx['cpu']:.2f} s vs {keras['cpu']:.2f} s CPU, {onnx['rss']:.0f} MB vs "
              f"{keras['rss']:.0f} MB ({keras['rss'] / onnx['rss']:.1f}x less)")
        if "folder" in onnx:
            print(f"  {len(photos)} photos: {onnx['folder']:.1f} s vs {keras['folder']:.1f} s; per photo after "
                  f"start-up {1000 * onnx['marginal']:.0f} ms vs {1000 * keras['marginal']:.0f} ms")
        if "fps" in onnx and "fps" in keras:
            print(f"  video: {onnx['fps']:.1f} fps vs {keras['fps']:.1f} fps; model call {onnx['model_ms']:.1f} ms vs "
                  f"{keras['model_ms']:.1f} ms per frame")
    if "onnx" in results:
        onnx = results["onnx"]
        verdict = [
            f"one photo {'meets' if onnx['wall'] <= TARGET_WALL_S else 'MISSES'} {TARGET_WALL_S:g} s wall "
            f"({onnx['cpu']:.2f} s of CPU: what it takes on an idle core)",
            f"memory {'meets' if onnx['rss'] <= TARGET_RSS_MB else 'MISSES'} {TARGET_RSS_MB:g} MB",
        ]
        if "fps" in onnx and "fps" in results.get("keras", {}):
            verdict.append(f"video fps {'not below' if onnx['fps'] >= results['keras']['fps'] else 'BELOW'} Keras'")
        print("targets (ONNX path): " + "; ".join(verdict))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
