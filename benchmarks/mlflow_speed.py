"""The MLflow path's cost: registering the built-in model, `mlflow models serve` start, req/s.

In a temporary folder with a local SQLite tracking URI: times `nsfw-tui export --mlflow
--model open_nsfw` (whole process), starts `mlflow models serve --env-manager local` on a
free port (time to the first 200 from /health), then sends requests in the original
project's format, one path each and --batch paths each, from --threads client threads, and
prints figures. Stops the server.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/mlflow_speed.py
Options: --requests N (default 100 per mode), --threads N (default 4), --batch N (default 8),
--size WxH of the photos (default 640x480).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_speed import free_port, load, show
from support.imagegen import photo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    n = min(args.requests, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "photos"
        root.mkdir()
        names = []
        for i in range(64):
            photo((w, h), i).save(root / f"p{i:02d}.jpg", quality=88)
            names.append(f"p{i:02d}.jpg")
        uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
        env = dict(os.environ, MLFLOW_TRACKING_URI=uri, NSFW_TUI_SERVE_ROOT=str(root))
        env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        print(f"{os.cpu_count()} CPUs; {n} requests per mode from {args.threads} threads")

        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nsfw_tui.cli",
                "export",
                "--mlflow",
                "--model",
                "open_nsfw",
                f"logging.mlflow.tracking_uri={uri}",
                "--home",
                str(tmp_path / "home"),
            ],
            cwd=tmp,
            env=env,
            check=True,
            capture_output=True,
        )
        print(
            f"export --mlflow --model open_nsfw (whole process): "
            f"{time.perf_counter() - started:.1f} s"
        )

        port = free_port()
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        started = time.perf_counter()
        server = subprocess.Popen(
            [
                mlflow,
                "models",
                "serve",
                "-m",
                "models:/nsfw_detection_model/latest",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("mlflow models serve did not answer /health")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            print(
                f"mlflow models serve: first 200 from /health after "
                f"{time.perf_counter() - started:.1f} s"
            )
            load(url, [{"inputs": [names[0]]}], 1)  # the model loads on the first request
            single = [{"inputs": [names[i % 64]]} for i in range(n)]
            show("one path per request", load(url, single, args.threads), 1)
            batch = [
                {"inputs": [names[(i * args.batch + j) % 64] for j in range(args.batch)]}
                for i in range(max(1, n // args.batch))
            ]
            show(f"{args.batch} paths per request", load(url, batch, args.threads), args.batch)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
