"""Load on the web app: serve.py under 300 photo requests at concurrency 8, then a burst above its bound.

Starts ``serve.py`` on a free local port (the bundled model unless --model), posts one photo (skimage's astronaut,
512x512 PNG, one face, unless --image) and prints:

* p50 / p99 latency, requests per second and errors (any answer but 200; target 0) for --requests requests sent
  by --concurrency client threads, each on its own keep-alive connection;
* the server's RSS after a warm-up, and after the run (target: growth <= 10 %);
* a burst of --burst simultaneous requests against --max-in-flight admitted at once: those beyond the bound must
  get 503 fast (target: every answer is a 200 or a 503, the slowest 503 under 1 s, no timeout);
* that SIGINT stops the server with exit code 0.

Exit code 0 when every target is met, 1 otherwise. Figures are noisy on a shared machine: compare runs made together.

    python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --requests 1000 --concurrency 16 --max-in-flight 16 --threads 2
    python benchmarks/bench_serve.py --model runs/A/model.keras --image photo.jpg
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_RSS_GROWTH = 0.10
MAX_503_SECONDS = 1.0
CLIENT_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model for serve.py (default: the bundled one)")
    parser.add_argument("--image", type=Path, help="photo to post (default: skimage's astronaut)")
    parser.add_argument("--requests", type=int, default=300, help="requests in the load run (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads in the load run (default 8)")
    parser.add_argument("--warmup", type=int, default=16, help="requests before the first RSS reading (default 16)")
    parser.add_argument("--max-in-flight", type=int, default=8, help="serve.py --max-in-flight (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="serve.py --threads (default 1)")
    parser.add_argument("--burst", type=int, default=32, help="simultaneous requests in the burst (default 32)")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "max_in_flight", "threads", "burst"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.burst <= args.max_in_flight:
        parser.error(f"--burst {args.burst} must exceed --max-in-flight {args.max_in_flight} to test refusals")
    if args.image is not None and not args.image.is_file():
        parser.error(f"--image {args.image}: no such file")
    return args


def photo_bytes(path: Path | None) -> tuple[str, bytes]:
    if path is not None:
        return path.name, path.read_bytes()
    import cv2
    from skimage import data

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return "astronaut.png", encoded.tobytes()


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, str(ROOT / "serve.py"), "--port", "0", "--max-in-flight", str(args.max_in_flight)]
    command += ["--threads", str(args.threads)] + (["--model", str(args.model)] if args.model else [])
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("serving on "):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
            return process, line.split()[2]
    raise SystemExit(f"serve.py exited with code {process.wait()} before serving")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import httpx
    import psutil

    name, photo = photo_bytes(args.image)
    process, url = start_server(args)
    server = psutil.Process(process.pid)
    local = threading.local()

    def post() -> tuple[int, float]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S)
        start = time.perf_counter()
        try:
            status = local.client.post("/api/predict", files={"file": (name, photo)}).status_code
        except httpx.TimeoutException:
            status = 0
        return status, time.perf_counter() - start

    try:
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda _: post(), range(args.warmup)))
            rss_before = server.memory_info().rss
            start = time.perf_counter()
            results = list(pool.map(lambda _: post(), range(args.requests)))
            wall = time.perf_counter() - start
            rss_after = server.memory_info().rss

        barrier = threading.Barrier(args.burst)

        def burst_post() -> tuple[int, float]:
            local.client = httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S)
            local.client.get("/api/health")  # connect first, so the burst is the requests themselves
            barrier.wait()
            return post()

        with ThreadPoolExecutor(args.burst) as pool:
            burst = list(pool.map(lambda _: burst_post(), range(args.burst)))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            exit_code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = None

    latencies = [seconds for status, seconds in results if status == 200]
    errors = sum(status != 200 for status, _ in results)
    growth = rss_after / rss_before - 1
    refused = [seconds for status, seconds in burst if status == 503]
    served = sum(status == 200 for status, _ in burst)
    other = [status for status, _ in burst if status not in (200, 503)]
    print(f"serve.py with {args.threads} model thread(s), --max-in-flight {args.max_in_flight}; photo {name}")
    print(f"load: {args.requests} requests at concurrency {args.concurrency} in {wall:.1f} s")
    if latencies:
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        print(f"  latency p50 {p50:.0f} ms, p99 {p99:.0f} ms; {args.requests / wall:.1f} requests/s")
    print(f"  errors: {errors} (target 0)")
    print(
        f"  server RSS after warm-up {rss_before / 2**20:.0f} MiB, after the run {rss_after / 2**20:.0f} MiB: "
        f"{100 * growth:+.1f} % (target <= {100 * MAX_RSS_GROWTH:.0f} %)"
    )
    slowest_refusal = max(refused, default=0.0)
    print(
        f"burst: {args.burst} at once against {args.max_in_flight} admitted: {served} served, {len(refused)} got 503 "
        f"(slowest 503 in {slowest_refusal * 1000:.0f} ms, target < {MAX_503_SECONDS * 1000:.0f}), "
        f"{other.count(0)} timeouts, {len(other) - other.count(0)} other answers"
    )
    print(f"server exit code after SIGINT: {exit_code} (target 0)")
    met = (
        errors == 0
        and growth <= MAX_RSS_GROWTH
        and refused
        and slowest_refusal < MAX_503_SECONDS
        and not other
        and exit_code == 0
    )
    print("all targets met" if met else "TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
