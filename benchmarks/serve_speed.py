"""REST endpoint speed: requests/s and latency of POST /invocations with the built-in model.

Starts `nsfw_tui.serve.run` in a child process on 127.0.0.1 (a free port), sends a bounded
load from client threads, prints figures, and stops the child.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/serve_speed.py
Options: --requests N (default 200 per mode), --threads N (default 8), --batch N (images per
request in the batch mode, default 8), --size WxH of the photos (default 640x480).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.imagegen import photo

SERVER = textwrap.dedent(
    """
    import sys
    from nsfw_tui.core.scan import inference_threads
    from nsfw_tui.core.scorers import load_builtin
    from nsfw_tui.serve import run

    port, root = int(sys.argv[1]), sys.argv[2]
    scorer = load_builtin(threads=inference_threads(2))
    run("127.0.0.1", port, scorer=scorer, threshold=scorer.default_threshold, root=root,
        decode_workers=2, log_level="warning")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(root)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def load(url: str, bodies: list[dict], threads: int) -> dict:
    """Send every body once from ``threads`` threads; statuses and latencies."""
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(base_url=url, timeout=120, limits=limits) as client:

        def one(body: dict) -> tuple[int, float]:
            t = time.perf_counter()
            status = client.post("/invocations", json=body).status_code
            return status, time.perf_counter() - t

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, bodies))
        wall = time.perf_counter() - started
    lat = sorted(t for _, t in results)
    statuses: dict[int, int] = {}
    for s, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    return {
        "wall": wall,
        "rps": len(bodies) / wall,
        "p50": statistics.median(lat),
        "p95": lat[max(0, round(0.95 * len(lat)) - 1)],
        "statuses": statuses,
    }


def health_while(url: str, stop: threading.Event) -> list[float]:
    """/health latencies, one probe every 50 ms until ``stop`` (bounded to 2,000 probes)."""
    out = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set() and len(out) < 2000:
            t = time.perf_counter()
            client.get("/health")
            out.append(time.perf_counter() - t)
            stop.wait(0.05)
    return out


def show(name: str, r: dict, images_per_request: int) -> None:
    print(
        f"{name:<28} {r['rps']:7.1f} req/s {r['rps'] * images_per_request:7.1f} img/s   "
        f"p50 {r['p50'] * 1000:6.0f} ms   p95 {r['p95'] * 1000:6.0f} ms   {r['statuses']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    n = min(args.requests, 10_000)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        root.mkdir()
        names = []
        for i in range(64):  # distinct contents; the server caches nothing between requests
            photo((w, h), i).save(root / f"p{i:02d}.jpg", quality=88)
            names.append(f"p{i:02d}.jpg")
        blobs = [base64.b64encode((root / nm).read_bytes()).decode() for nm in names]
        print(
            f"{os.cpu_count()} CPUs; {n} requests per mode from {args.threads} threads; "
            f"{w}x{h} JPEG photos"
        )
        proc, url = start_server(root)
        try:
            load(url, [{"inputs": [names[i]]} for i in range(8)], 4)  # warm the workers
            paths = [{"inputs": [names[i % 64]]} for i in range(n)]
            show("1 path per request", load(url, paths, args.threads), 1)
            b64 = [{"images": [blobs[i % 64]]} for i in range(n)]
            show("1 base64 image per request", load(url, b64, args.threads), 1)
            k = args.batch
            batches = [{"inputs": [names[(i * k + j) % 64] for j in range(k)]} for i in range(n)]
            stop = threading.Event()
            with ThreadPoolExecutor(1) as side:
                probe = side.submit(health_while, url, stop)
                show(f"{k} paths per request", load(url, batches, args.threads), k)
                stop.set()
                during = sorted(probe.result())
            mid, worst = statistics.median(during) * 1000, during[-1] * 1000
            print(
                f"{'GET /health under that load':<28} p50 {mid:.1f} ms   max {worst:.1f} ms"
                f"   ({len(during)} probes)"
            )
            with httpx.Client(base_url=url) as client:
                started = time.perf_counter()
                health = [client.get("/health").status_code for _ in range(50)]
                per = (time.perf_counter() - started) / 50
            print(f"{'GET /health (idle)':<28} {per * 1000:7.2f} ms each   {set(health)}")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
