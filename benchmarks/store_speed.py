"""Label commit latency: one person's label at a time, with 1 and with 3 writer processes.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/store_speed.py
Options: --labels N (commits per writer, default 300), --baseline-src DIR (another checkout of
the project, e.g. `git worktree add /tmp/before REV`: its `Store` is measured in the same run,
alternating with this one, so both see the same machine).
Each writer process opens its own `Store` (synchronous=FULL, so every commit is fsynced) and
times `set_labels` for one image, as the review screen's writer does per key press. With 3
writers the commits queue on SQLite's write lock; the figures are per commit, all writers
pooled.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WRITER = """
import json, sys, time
from nsfw_tui.core.store import Store
path, n, who = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = Store.open(path, check=False)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # all writers start together
lat = []
for i in range(n):
    t = time.perf_counter()
    store.set_labels([f"{who}-{i:06d}"], "nsfw" if i % 2 else "sfw", source="human")
    lat.append(time.perf_counter() - t)
store.close()
print(json.dumps(lat))
"""


def run(src: Path, writers: int, labels: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\nfrom nsfw_tui.core.store import Store\n"
                "Store.open(sys.argv[1]).close()",
                str(path),
            ],
            env=env,
            check=True,
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path), str(labels), f"w{k}"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(writers)
        ]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        out: list[float] = []
        for p in procs:
            out += json.loads(p.stdout.readline())
            p.wait()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=300)
    ap.add_argument("--baseline-src", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    sources = {"this checkout": REPO}
    if args.baseline_src is not None:
        sources = {"baseline": args.baseline_src.resolve(), **sources}
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):  # alternate, so drift on the machine hits both alike
        for writers in (1, 3):
            for name, src in sources.items():
                results.setdefault((name, writers), []).extend(run(src, writers, args.labels))
    print(f"label commit latency, {args.labels} commits per writer x {args.repeats} repeats")
    print(f"{'code':<16}{'writers':>8}{'commits':>9}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for (name, writers), lat in results.items():
        print(
            f"{name:<16}{writers:>8}{len(lat):>9}{1000 * pct(lat, 0.5):>9.2f}"
            f"{1000 * pct(lat, 0.95):>9.2f}{1000 * statistics.mean(lat):>9.2f}"
        )


if __name__ == "__main__":
    main()
