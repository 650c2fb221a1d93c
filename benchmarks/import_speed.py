"""`import DIR --label nsfw` over 2,000 files: a new store (every file read), then again (none).

Then the files training reads before its first epoch (`trainer.data.labelled_samples`).

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/import_speed.py
Options: --files N (default 2000), --rounds R (default 3, median shown), --baseline-src DIR
(another checkout of the project, e.g. `git archive REV | tar -x -C /tmp/before`: measured
in the same run, alternating with this one, so both see the same machine).
The files: 90 % 1280x960 JPEG q90, 5 % 4032x3024 JPEG q90 (a phone photo), 4 % 1280x960 PNG,
1 % JPEGs zeroed from two thirds of their bytes (P12). Each file's bytes are unique. They
were just written, so they come from the page cache: the figures are reading, hashing and
checking on the CPU, not the disk.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.imagegen import photo  # noqa: E402

CHILD = """
import json, sys, time
from nsfw_tui.core.labels import import_folders, plan_import
from nsfw_tui.core.store import Store
folder, store_path = sys.argv[1], sys.argv[2]
out = {}
with Store.open(store_path) as store:
    plan = plan_import(folder, "nsfw")
    for run in ("new store", "again"):
        t = time.perf_counter()
        report = import_folders(store, plan)
        out[run] = {"s": time.perf_counter() - t, "labelled": report.labelled["nsfw"],
                    "unchanged": report.unchanged, "skipped": len(report.errors)}
    from trainer.data import labelled_samples
    t = time.perf_counter()
    samples, skipped = labelled_samples(store)
    out["train's files"] = {"s": time.perf_counter() - t, "labelled": len(samples),
                            "unchanged": 0, "skipped": len(skipped)}
print(json.dumps(out))
"""


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=90) if fmt == "JPEG" else img.save(buf, fmt)
    return buf.getvalue()


def _photo(size: tuple[int, int], seed: int) -> Image.Image:
    # drawn at a quarter of the size and upscaled with noise: photo-like, without minutes of numpy
    small = photo((size[0] // 4, size[1] // 4), seed=seed).resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(small, dtype=np.int16)
    arr = arr + np.random.default_rng(seed).normal(0, 8, arr.shape).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _unique(data: bytes, i: int) -> bytes:
    """The same picture with bytes of its own: a JPEG comment, or a PNG text chunk."""
    note = f"file {i}".encode()
    if data[:2] == b"\xff\xd8":
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + data[2:]
    body = b"tEXt" + b"Comment\0" + note
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return data[:33] + chunk + data[33:]


def make_files(folder: Path, n: int) -> None:
    bases = {
        "jpg": [_encode(_photo((1280, 960), s), "JPEG") for s in range(20)],
        "big": [_encode(_photo((4032, 3024), s), "JPEG") for s in range(3)],
        "png": [_encode(_photo((1280, 960), s), "PNG") for s in range(3)],
    }
    for i in range(n):
        kind = "big" if i % 20 == 7 else "png" if i % 25 == 3 else "jpg"
        data = _unique(bases[kind][i % len(bases[kind])], i)
        if i % 100 == 50:  # an interrupted download
            cut = len(data) * 2 // 3
            data = data[:cut] + bytes(len(data) - cut)
        suffix = "png" if kind == "png" else "jpg"
        (folder / f"f{i:05d}.{suffix}").write_bytes(data)


def run(src: Path, folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(Path(tmp) / "store.db")],
            env=env,
            cwd=tmp,  # `-c` puts the working directory first on sys.path, before PYTHONPATH
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-src", type=Path, default=None)
    args = ap.parse_args()
    sources = {"this checkout": REPO}
    if args.baseline_src is not None:
        sources = {"baseline": args.baseline_src.resolve(), **sources}
    with tempfile.TemporaryDirectory(prefix="nsfw-import-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        print(f"writing {args.files} files to {folder} ...")
        make_files(folder, args.files)
        total = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{total / 2**20:.0f} MiB; {os.cpu_count()} cores")
        results: dict[str, list[dict]] = {name: [] for name in sources}
        for _ in range(args.rounds):  # alternate, so drift on the machine hits both alike
            for name, src in sources.items():
                results[name].append(run(src, folder))
    print(f"import of {args.files} files, median of {args.rounds} rounds")
    print(f"{'code':<15}{'run':<15}{'seconds':>9}{'files/s':>9}{'MiB/s':>8}  outcome")
    for name, rounds in results.items():
        for which in ("new store", "again", "train's files"):
            s = statistics.median(r[which]["s"] for r in rounds)
            last = rounds[-1][which]
            outcome = (
                f"{last['labelled']} labelled, {last['unchanged']} unchanged, "
                f"{last['skipped']} skipped"
                if which != "train's files"
                else f"{last['labelled']} samples, {last['skipped']} skipped"
            )
            mib = total / 2**20 / s
            print(f"{name:<15}{which:<15}{s:>9.3f}{args.files / s:>9.0f}{mib:>8.0f}  {outcome}")


if __name__ == "__main__":
    main()
