"""Start-up cost as a person feels it: whole processes, from spawn to the answer.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/startup_speed.py
Options: --runs N (default 10, the median is reported), --files N (default 1000, the warm
scan), --images N (default 10000, the review screen). Figures:
- `nsfw-tui --help`;
- `nsfw-tui scan DIR -o out.csv` over N files already in the cache (nothing to score);
- the review screen's first frame over N cached images, from the spawn of the process to the
  moment its image list holds the folder's rows (headless, 120 x 40).
The caches are filled first: the scan's by one real scan with the built-in model, the review
screen's by recording the files with cached probabilities (no inference), as a finished scan
would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "nsfw_tui.cli"]

FIRST_FRAME = """
import asyncio, sys, time
from pathlib import Path
from nsfw_tui.core.home import resolve_home
from nsfw_tui.tui.app import make_app
from nsfw_tui.tui.widgets.image_list import ImageList

async def main():
    app = make_app(Path(sys.argv[1]), home=resolve_home(sys.argv[2]))
    async with app.run_test(size=(120, 40)) as pilot:
        while True:
            lists = app.screen.query(ImageList)
            if lists and len(lists.first().rows) >= int(sys.argv[3]):
                print(time.time(), flush=True)
                return
            await pilot.pause(0.005)

asyncio.run(main())
"""


def tiny_images(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        d = folder / f"set_{i // 1000:02d}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"img_{i:05d}.png"
        Image.new("RGB", (8, 8), (i % 256, i // 256 % 256, 77)).save(p, compress_level=1)
        paths.append(p)
    return paths


def timed(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def first_frame(folder: Path, home: Path, n: int, env: dict) -> float:
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", FIRST_FRAME, str(folder), str(home), str(n)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.split()[-1]) - t0


def prefill(home: Path, paths: list[Path]) -> None:
    from nsfw_tui.core.home import resolve_home
    from nsfw_tui.core.images import hash_file
    from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin
    from nsfw_tui.core.store import ScoreRecord, Store
    from nsfw_tui.core.structure import CHECK_VERSION

    records = []
    for i, p in enumerate(paths):
        st = p.stat()
        sha, _ = hash_file(str(p))
        records.append(
            ScoreRecord(
                path=str(p),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=sha,
                probability=(i % 100) / 100,
                model_id=BUILTIN_ID,
                width=8,
                height=8,
                format="PNG",
                n_frames=1,
                checked=CHECK_VERSION,
            )
        )
    with Store.open(resolve_home(home).store_path) as store:
        ensure_builtin(store)
        store.record_files(records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--images", type=int, default=10000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = {**os.environ, "NSFW_TUI_HOME": str(base / "home"), "PYTHONUNBUFFERED": "1"}
        scan_dir = base / "scan"
        tiny_images(scan_dir, args.files)
        t = time.perf_counter()
        subprocess.run(
            [*CLI, "scan", str(scan_dir), "-o", str(base / "cold.csv")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"cold scan of {args.files} files (fills the cache): {time.perf_counter() - t:.1f} s")
        review_dir = base / "review"
        prefill(base / "review-home", tiny_images(review_dir, args.images))
        results: dict[str, list[float]] = {"help": [], "scan": [], "frame": []}
        for _ in range(args.runs):  # interleaved, so drift on the machine hits all alike
            results["help"].append(timed([*CLI, "--help"], env))
            results["scan"].append(
                timed([*CLI, "scan", str(scan_dir), "-o", str(base / "warm.csv")], env)
            )
            results["frame"].append(first_frame(review_dir, base / "review-home", args.images, env))
    labels = {
        "help": "nsfw-tui --help",
        "scan": f"warm scan of {args.files} cached files",
        "frame": f"review screen first frame, {args.images} cached images",
    }
    print(f"median of {args.runs} whole-process runs (min, max)")
    for key, values in results.items():
        print(
            f"  {labels[key]:<48} {statistics.median(values):6.3f} s  "
            f"({min(values):.3f}, {max(values):.3f})"
        )


if __name__ == "__main__":
    main()
