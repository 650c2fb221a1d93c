"""Near-duplicate grouping speed over 10,000 and 100,000 images with cached features.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/dupes_speed.py
First, the figures behind the default threshold: recall and false merges at several cosine
thresholds and hash distances on ``--scenes`` generated scenes with their near copies,
through the real built-in network. Then it times the review screen's view over
``--refresh-rows`` rows (10,000) with the `useful` sort and the `duplicates` filter: the
work a refresh does on the UI thread.

Options: --images 10000,100000  --threshold 0.94  --copies 0.1  --store-max 10000 (read
from a real store up to this many images; writing 100,000 takes minutes here).

Features are synthetic (non-negative, low-rank plus noise, as pooled ReLU features are) and
a share (``--copies``) of the images are near copies of another (a little noise on its
features: cosine about 0.97-0.99), so the grouping has real pairs to join. With the store,
they are written through ``Store.record_files`` as a scan writes them and read back with
``near_duplicates`` (what `nsfw-tui dupes` does after its scan); the figures split the read
from the grouping itself (float16 vectors, float32 block products, union-find).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.imagegen import grouping_figures, variant_folder

from nsfw_tui.core.adapt_head import DIM
from nsfw_tui.core.curation import Curation
from nsfw_tui.core.dupes import PROJECT_DIMS, PROJECT_MIN, Groups, group_vectors, near_duplicates
from nsfw_tui.core.review import Review, Row
from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION


def synthetic(n: int, copies: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, DIM) float16 features and, per image, the index of its original (itself if none)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 64))
    mixing = rng.normal(size=(64, DIM)) / 8
    x = np.maximum(latent @ mixing + rng.normal(0, 0.5, size=(n, DIM)), 0.0)
    origin = np.arange(n)
    k = int(n * copies)
    copied = rng.choice(n, size=k, replace=False)
    sources = rng.choice(np.setdiff1d(np.arange(n), copied), size=k)
    x[copied] = x[sources] * rng.uniform(0.8, 1.2, size=(k, 1)) + rng.normal(0, 0.05, (k, DIM))
    origin[copied] = sources
    return np.maximum(x, 0).astype(np.float16), origin


def fill_store(path: Path, x: np.ndarray, chunk: int = 5000) -> tuple[Store, list[str]]:
    store = Store.open(path)
    ensure_builtin(store)
    shas = [f"{i:064x}" for i in range(len(x))]
    for start in range(0, len(x), chunk):
        store.record_files(
            ScoreRecord(
                f"/bench/{i:07d}.jpg",
                1000,
                1,
                shas[i],
                probability=0.1,
                model_id=BUILTIN_ID,
                features=x[i : i + 1],
                checked=CHECK_VERSION,
            )
            for i in range(start, min(start + chunk, len(x)))
        )
    return store, shas


def check(groups, origin: np.ndarray) -> str:
    """How many planted copies ended up with their original, and how many groups there are."""
    g = np.array([groups.of(f"{i:064x}") for i in range(len(origin))])
    copies = np.nonzero(origin != np.arange(len(origin)))[0]
    found = int((g[copies] == g[origin[copies]]).sum())
    sizes = np.bincount(g)
    roots = {}  # group -> the originals in it: more than one is a false merge
    for i in range(len(origin)):
        roots.setdefault(int(g[i]), set()).add(int(origin[i]))
    merged = sum(1 for r in roots.values() if len(r) > 1)
    return (
        f"{found}/{len(copies)} copies with their original, {int((sizes > 1).sum())} groups, "
        f"{merged} false merges"
    )


def refresh_times(n: int, repeat: int = 7) -> None:
    """The review's view recomputed over ``n`` rows (what the UI thread does on a refresh)."""
    rng = np.random.default_rng(0)
    rows = [
        Row(f"/x/{i}.jpg", f"{i}.jpg", "", sha256=f"{i:064x}", probability=float(rng.random()))
        for i in range(n)
    ]
    for row in rows[::10]:
        row.label = "nsfw"
    shas = [r.sha256 for r in rows]
    curation = Curation(
        groups=Groups(shas, np.arange(n) // 3),
        others={s: float(rng.random() < 0.5) for s in shas},
        novelty={s: float(rng.random()) for s in shas},
        oof={s: float(rng.random()) for s in shas[::10]},
    )
    review = Review(Path("/x"), rows, 0.2, "bench", curation=curation)
    for sort, filt in (("name", "all"), ("useful", "all"), ("name", "duplicates")):
        review.sort, review.filter = sort, filt
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            review.refresh_view()
            times.append(time.perf_counter() - started)
        ms = statistics.median(times) * 1000
        print(f"{n:>7} rows  refresh, sort {sort}, filter {filt}: median {ms:.1f} ms")


def threshold_figures(scenes: int, thresholds: list[float], distances: list[int]) -> None:
    """Recall and false merges per threshold on generated scenes and their near copies.

    The same scenes as tests/core/test_dupes.py (other seeds): each written as a file with
    four near copies (half size, JPEG q40, 5% and 10% crops), scanned by the real built-in
    network into a store, grouped at each cosine threshold; and by perceptual hash.
    """
    import hashlib

    from nsfw_tui.core.scan import ScanOptions, scan_folder
    from nsfw_tui.core.scorers import load_builtin

    with tempfile.TemporaryDirectory() as tmp:
        truth = variant_folder(Path(tmp) / "v", range(1000, 1000 + scenes))
        with Store.open(Path(tmp) / "store.db") as store:
            result = scan_folder(Path(tmp) / "v", load_builtin(), store, ScanOptions(workers=0))
            sha_of = {i.path: i.sha256 for i in result.items}
            for threshold in thresholds:
                groups = near_duplicates(store, list(sha_of.values()), threshold, 12)
                group_of = {p: groups.of(sha_of[str(p)]) for p in truth}
                recall, merged = grouping_figures(group_of, truth)
                print(
                    f"{scenes} scenes  cosine >= {threshold:.2f}: recall {recall:.3f}, "
                    f"false merges {merged} of {scenes}"
                )
        paths = {hashlib.sha256(p.read_bytes()).hexdigest(): str(p) for p in truth}
        with Store.open(Path(tmp) / "empty.db") as empty:  # no features: the hash decides
            for distance in distances:
                groups = near_duplicates(empty, list(paths), 0.94, distance, paths=paths)
                group_of = {p: groups.of(hashlib.sha256(p.read_bytes()).hexdigest()) for p in truth}
                recall, merged = grouping_figures(group_of, truth)
                print(
                    f"{scenes} scenes  phash <= {distance} bits: recall {recall:.3f}, "
                    f"false merges {merged} of {scenes}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="10000,100000")
    parser.add_argument("--threshold", type=float, default=0.94)
    parser.add_argument("--no-brute", action="store_true", help="skip the brute-force timing")
    parser.add_argument("--copies", type=float, default=0.1)
    parser.add_argument("--refresh-rows", type=int, default=10000)
    parser.add_argument("--scenes", type=int, default=100, help="0 skips the threshold figures")
    parser.add_argument("--thresholds", default="0.88,0.90,0.92,0.94,0.96")
    parser.add_argument("--distances", default="8,10,12,14,16")
    parser.add_argument(
        "--store-max", type=int, default=10000, help="through a real store up to this many"
    )
    args = parser.parse_args()
    if args.scenes:
        threshold_figures(
            args.scenes,
            [float(v) for v in args.thresholds.split(",")],
            [int(v) for v in args.distances.split(",")],
        )
    refresh_times(args.refresh_rows)
    print(
        "grouping by cosine of cached features: brute force (float16 -> float32 blocks) "
        f"beside the default (a first pass on {PROJECT_DIMS} principal directions from "
        f"{PROJECT_MIN:,} images on), side by side"
    )
    for n in (int(v) for v in args.images.split(",")):
        x, origin = synthetic(n, args.copies)
        v = x.astype(np.float32)
        v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
        shas = [f"{i:064x}" for i in range(n)]
        ways = {"brute force": 0, "default": None, f"projected ({PROJECT_DIMS})": PROJECT_DIMS}
        if args.no_brute:
            ways.pop("brute force")
        for name, project in ways.items():
            started = time.perf_counter()
            groups = group_vectors(shas, v, args.threshold, project=project)
            grouping = time.perf_counter() - started
            print(f"{n:>7} images  {name:<16} grouping {grouping:7.2f} s  {check(groups, origin)}")
        if n > args.store_max:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            store, shas = fill_store(Path(tmp) / "store.db", x)
            filled = time.perf_counter() - started
            with store:
                started = time.perf_counter()
                groups = near_duplicates(store, shas, args.threshold, 12)
                whole = time.perf_counter() - started
            print(
                f"{n:>7} images  store read + grouping {whole:7.2f} s "
                f"(store written in {filled:.1f} s)  {check(groups, origin)}"
            )


if __name__ == "__main__":
    main()
