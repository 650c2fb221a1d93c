"""The Ray engine's cost on one machine: local `scan` against `scan --engine ray` (1 and 2
Ray scoring workers) over the same photos, with the built-in model.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/scale_speed.py
Options: --photos N (default 2000, 640x480 JPEG q90), --workers 1 2 (Ray worker counts).
Each Ray run starts its own local Ray (with this machine's cores): "total" counts that start,
"steady" is the rate from the first row written to the last.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.imagegen import photo

from nsfw_tui.core.scan import ScanOptions, inference_threads, scan_folder
from nsfw_tui.core.scorers import BUILTIN_ID, load_builtin
from nsfw_tui.core.store import ModelRow, Store


def make_photos(folder: Path, n: int) -> None:
    base = [photo((640, 480), seed=i) for i in range(50)]
    for i in range(n):  # 50 drawings, each saved at a different quality: distinct bytes
        base[i % 50].save(folder / f"photo_{i:05d}.jpg", quality=80 + i % 17)


def local(folder: Path, tmp: Path) -> tuple[float, int]:
    scorer = load_builtin(threads=inference_threads(ScanOptions().workers))
    with Store.open(tmp / f"bench-{time.time_ns()}.db") as store:
        t = time.perf_counter()
        result = scan_folder(folder, scorer, store, ScanOptions())
        return time.perf_counter() - t, len(result.items)


def on_ray(folder: Path, tmp: Path, workers: int) -> tuple[float, float, int]:
    from nsfw_tui.scale.bundle import bundle_for
    from nsfw_tui.scale.engine import EngineOptions, run_scan
    from nsfw_tui.scale.outdir import OutDir
    from nsfw_tui.scale.sources import plan_source

    row = ModelRow(BUILTIN_ID, "builtin", None, 0.2, {}, None, {}, 0.0, True)
    first: list[tuple[float, int]] = []

    def seen(p) -> None:
        if not first and p.done:
            first.append((time.perf_counter(), p.done))

    t = time.perf_counter()
    summary = run_scan(
        plan_source(str(folder)),
        OutDir.open(str(tmp / f"out-{workers}-{time.time_ns()}")),
        bundle_for(row),
        row.threshold,
        EngineOptions(workers=workers),
        on_progress=seen,
    )
    end = time.perf_counter()
    t0, n0 = first[0]
    steady = (summary.written - n0) / max(1e-9, end - t0)
    return end - t, steady, summary.written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tmp = Path(tempfile.mkdtemp(prefix="nsfw-scale-bench-"))
    folder = tmp / "photos"
    folder.mkdir()
    print(f"generating {args.photos} photos (640x480) in {folder} ...")
    make_photos(folder, args.photos)
    print(f"cores: {os.cpu_count()}; numbers on a shared machine are noisy")
    secs, n = local(folder, tmp)
    print(f"local scan:            {n / secs:6.2f} img/s ({secs:.1f} s, {n} images)")
    for w in args.workers:
        secs, steady, n = on_ray(folder, tmp, w)
        print(
            f"ray, {w} worker(s):      {n / secs:6.2f} img/s total ({secs:.1f} s with Ray's "
            f"start), {steady:6.2f} img/s steady"
        )


if __name__ == "__main__":
    main()
