"""Adaptation speed: fitting the head over 100 / 1,000 / 10,000 labels, rescoring 10k / 100k.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/adapt_speed.py
Options: --labels 100,1000,10000  --images 10000,100000  --kinds logreg,mlp  --repeat 3,
--no-threadpoolctl (as a base install, without it: BLAS keeps its own threads in the fit).

Features are synthetic (non-negative, low-rank plus noise, a class signal in a few
directions, as pooled ReLU features are) but live in a real store, written through
``Store.record_files`` as a scan writes them; the rescore reads them back from SQLite.
Fit times are the median of ``--repeat`` runs (one run at 10,000 labels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nsfw_tui.core import adapt as A
from nsfw_tui.core.metrics import auroc
from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1024) float16 features and (n,) labels, half NSFW."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    latent = rng.normal(size=(n, 32)) + np.outer(y, rng.normal(size=32)) * 0.2
    mixing = rng.normal(size=(32, A.DIM)) / 4
    x = np.maximum(latent @ mixing + rng.normal(0, 0.3, size=(n, A.DIM)), 0.0)
    return x.astype(np.float16), y


def fill_store(path: Path, n: int, chunk: int = 5000) -> tuple[Store, np.ndarray]:
    store = Store.open(path)
    ensure_builtin(store)
    x, y = synthetic(n, seed=1)
    for start in range(0, n, chunk):
        store.record_files(
            ScoreRecord(
                f"/bench/{i:07d}.jpg",
                1000,
                1,
                f"{i:064x}",
                probability=0.5,
                model_id=BUILTIN_ID,
                n_frames=1,
                features=x[i : i + 1],
                checked=CHECK_VERSION,
            )
            for i in range(start, min(n, start + chunk))
        )
    return store, y


def bench_fit(sizes: list[int], kinds: list[str], repeat: int) -> None:
    A.builtin_logit_weights()  # reads the built-in ONNX once; not part of a fit
    print(f"{'kind':<8}{'labels':>8}{'median s':>10}{'min s':>8}{'CV AUROC':>10}  C")
    for kind in kinds:
        settings = A.Settings(kind=kind)
        for n in sizes:
            x, y = synthetic(n)
            times, fit = [], None
            for _ in range(1 if n >= 10_000 else repeat):
                start = time.perf_counter()
                fit = A.fit_head(x, np.arange(n), y, settings)
                times.append(time.perf_counter() - start)
            print(
                f"{kind:<8}{n:>8}{statistics.median(times):>10.3f}{min(times):>8.3f}"
                f"{auroc(y, fit.cv_probs):>10.3f}  {fit.c:g}"
            )


def bench_rescore(sizes: list[int]) -> None:
    x, y = synthetic(200)
    head = A.fit_head(x, np.arange(200), y).head
    print(f"\n{'cached images':>14}{'fill s':>9}{'rescore s':>11}{'images/s':>11}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            store, _ = fill_store(Path(tmp) / "store.db", n)
            filled = time.perf_counter() - start
            with store:
                start = time.perf_counter()
                out = A.rescore(store, head, "adapted-bench")
                took = time.perf_counter() - start
            assert len(out) == n
            print(f"{n:>14}{filled:>9.1f}{took:>11.3f}{n / took:>11.0f}")


def bench_adapt(labels: int, images: int) -> None:
    """The whole of ``adapt``: read labels and features, fit, save, rescore, register."""
    with tempfile.TemporaryDirectory() as tmp:
        store, y = fill_store(Path(tmp) / "store.db", images)
        with store:
            for cls, name in ((1, "nsfw"), (0, "sfw")):
                idx = np.flatnonzero(y[:labels] == cls)
                store.set_labels([f"{i:064x}" for i in idx], name)
            start = time.perf_counter()
            result = A.adapt(store, Path(tmp) / "models")
            took = time.perf_counter() - start
    print(
        f"\nadapt(): {labels} labels, {images} cached images: {took:.3f} s in all "
        f"(fit {result.fit_s:.3f} s, rescore {result.rescore_s:.3f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default="100,1000,10000")
    parser.add_argument("--images", default="10000,100000")
    parser.add_argument("--kinds", default="logreg,mlp")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-threadpoolctl", action="store_true")
    args = parser.parse_args()
    if args.no_threadpoolctl:
        sys.modules["threadpoolctl"] = None  # type: ignore[assignment]  # import fails
    print("BLAS threads in the fit:", "default" if args.no_threadpoolctl else "one (threadpoolctl)")
    bench_fit([int(v) for v in args.labels.split(",")], args.kinds.split(","), args.repeat)
    bench_rescore([int(v) for v in args.images.split(",") if v])
    bench_adapt(1000, 10_000)


if __name__ == "__main__":
    main()
