"""Watch latency and throughput: 2,000 files copied into a watched folder in bursts.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/watch_speed.py
Options: --files N (default 2000), --bursts N (10), --large N (20 large JPEGs written slowly),
--trickle N (50 of the files written one at a time once the bursts are logged), --settle S
(2.0, the configured default), --workers N (decode processes, default from config), --fake (a
fast fake scorer instead of the built-in model), --polling, --no-baseline (skip the plain
`scan_files` run over the same files that shows what the model alone costs).
Latency is from a file's last write to its log line, minus the settle time: in the bursts it
is mostly queueing behind the model; the trickle shows a file landing on an idle watcher.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.imagegen import photo

from nsfw_tui.core.config import load_config
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scan import ScanOptions, inference_threads
from nsfw_tui.core.scorers import ScoreBatch
from nsfw_tui.core.store import Store
from nsfw_tui.core.watch import Watcher, WatchOptions


class FakeScorer:
    """P(nsfw) = mean red / 255: no model cost, so the watcher's own overhead shows."""

    id = "bench-fake"
    preprocessing = IMAGENET(32)
    default_threshold = 0.5

    def score(self, pixels):
        return ScoreBatch(pixels[..., 0].astype(np.float32).mean(axis=(1, 2)) / 255.0)


def jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_payloads(n: int, large: int) -> list[tuple[str, bytes, bool]]:
    """(name, bytes, slow): ``large`` 3000x2000 photos written slowly, the rest 320x240."""
    base = photo((320, 240), seed=0)
    out = []
    for i in range(n):
        if i < large:
            small = photo((750, 500), seed=i).resize((3000, 2000), Image.Resampling.BILINEAR)
            out.append((f"large_{i:04d}.jpg", jpeg(small, 90), True))
        else:
            img = base.copy()
            img.putpixel((i % 320, (i // 320) % 240), (i % 256, 7, 99))  # unique bytes each
            out.append((f"img_{i:04d}.jpg", jpeg(img), False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--bursts", type=int, default=10)
    ap.add_argument("--large", type=int, default=20)
    ap.add_argument("--trickle", type=int, default=50)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--fake", action="store_true")
    ap.add_argument("--polling", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nsfw-watch-bench-"))
    inbox = tmp / "inbox"
    inbox.mkdir()
    print(f"generating {args.files} files ({args.large} large) ...")
    payloads = make_payloads(args.files, args.large)
    cfg = load_config(None, []).scan
    scan_options = ScanOptions.from_config(cfg)
    if args.workers is not None:
        scan_options.workers = args.workers
    if args.fake:
        scorer = FakeScorer()
    else:
        from nsfw_tui.models.registry import load_scorer, resolve_model

        with Store.open(tmp / "store.db") as store:
            scorer = load_scorer(
                resolve_model(store), threads=inference_threads(scan_options.workers)
            )
    Store.open(tmp / "store.db").close()

    logged: dict[str, float] = {}
    counts: Counter = Counter()
    lock = threading.Lock()

    def on_decision(d: dict) -> None:
        now = time.time()
        with lock:
            name = Path(d["path"]).name
            counts[name] += 1
            logged.setdefault(name, now)

    watcher = Watcher(
        inbox,
        tmp / "store.db",
        scorer,
        threshold=scorer.default_threshold,
        options=WatchOptions(settle_s=args.settle, polling=args.polling),
        scan_options=scan_options,
        on_decision=on_decision,
    )
    watcher.start()
    last_write: dict[str, float] = {}

    def slow_writer(items: list[tuple[str, bytes, bool]]) -> None:
        for name, data, _ in items:
            with open(inbox / name, "wb") as fh:  # one open, 64 KiB chunks, 20 ms apart
                for start in range(0, len(data), 65536):
                    fh.write(data[start : start + 65536])
                    fh.flush()
                    time.sleep(0.02)
            last_write[name] = time.time()

    slow = [p for p in payloads if p[2]]
    fast = [p for p in payloads if not p[2]]
    trickle = fast[len(fast) - args.trickle :] if args.trickle else []
    fast = fast[: len(fast) - len(trickle)]
    started = time.time()
    slow_thread = threading.Thread(target=slow_writer, args=(slow,))
    slow_thread.start()
    per_burst = -(-len(fast) // args.bursts)
    for b in range(args.bursts):
        for name, data, _ in fast[b * per_burst : (b + 1) * per_burst]:
            (inbox / name).write_bytes(data)
            last_write[name] = time.time()
        time.sleep(1.0)
    slow_thread.join()
    deadline = time.time() + 1800

    def wait_logged(n: int) -> None:
        while len(logged) < n and time.time() < deadline:
            time.sleep(0.05)

    wait_logged(len(payloads) - len(trickle))
    burst_end = max(logged.values())
    for name, data, _ in trickle:
        (inbox / name).write_bytes(data)
        last_write[name] = time.time()
        time.sleep(0.3)
    wait_logged(len(payloads))
    time.sleep(3 * args.settle)  # any second line for a file would show now
    stats = watcher.stats()
    watcher.stop()

    trickled = {name for name, _, _ in trickle}

    def latencies(names) -> list[float]:
        return sorted(logged[n] - last_write[n] - args.settle for n in names if n in logged)

    burst_lat = latencies(n for n in last_write if n not in trickled)
    trickle_lat = latencies(trickled)
    span = burst_end - started
    n_burst = len(payloads) - len(trickle)
    twice = sum(1 for c in counts.values() if c > 1)
    model = "fake scorer" if args.fake else f"built-in model ({scorer.id})"
    print(
        f"model: {model}; decode workers {scan_options.workers}; settle {args.settle} s; "
        f"{'polling' if args.polling else 'inotify'}"
    )
    print(
        f"files written: {len(payloads)}: {len(fast)} in {args.bursts} bursts 1 s apart, "
        f"{len(slow)} large JPEGs written slowly meanwhile, then {len(trickle)} one at a "
        "time 0.3 s apart"
    )
    print(
        f"files logged:  {len(logged)} ({twice} logged more than once); model inferences "
        f"{stats.scored}"
    )
    for label, lat in (("bursts", burst_lat), ("trickle", trickle_lat)):
        if not lat:
            continue
        p95 = statistics.quantiles(lat, n=20)[18] if len(lat) >= 20 else lat[-1]
        print(
            f"latency after settle ({label}, {len(lat)} files): median "
            f"{statistics.median(lat):.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s"
        )
    print(
        f"throughput (bursts): {n_burst / span:.1f} files/s ({n_burst} files, {span:.1f} s "
        "from the first write to the last line)"
    )
    if not args.no_baseline:
        from nsfw_tui.core.scan import scan_folder

        with Store.open(tmp / "baseline.db") as store:
            t = time.perf_counter()
            result = scan_folder(inbox, scorer, store, scan_options)
            took = time.perf_counter() - t
        print(
            f"baseline: scan_files over the same {len(result.items)} files in one call: "
            f"{len(result.items) / took:.1f} files/s"
        )
    if len(logged) != len(payloads) or twice:
        sys.exit(1)


if __name__ == "__main__":
    main()
