"""Video sampling cost: a scan of a video costs its sampled frames, not its length.

Run alone (nothing else on the cores):  PYTHONUNBUFFERED=1 python benchmarks/video_speed.py
Options: --frames N (scan.video_frames, default 16), --clips N (default 20).

Prints, for synthetic videos made here with PyAV (mpeg4, noise over a moving gradient so
the decoder has real work): the time and the frames decoded to sample each one against a
decode of every frame, and the throughput of `scan` with the built-in model over a folder
of short clips. Figures from a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nsfw_tui.core.scan import ScanOptions, inference_threads, scan_folder
from nsfw_tui.core.scorers import load_builtin
from nsfw_tui.core.store import Store
from nsfw_tui.core.video import sample_video


def make_video(
    path: Path, seconds: float, fps: int, size: tuple[int, int], gop: int, seed: int = 0
) -> Path:
    import av

    w, h = size
    rng = np.random.default_rng(seed)  # each clip its own content: no cache hits
    noise = rng.integers(0, 40, (8, h, w, 3), dtype=np.uint8)
    ramp = np.linspace(0, 200, w, dtype=np.float32)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": str(gop), "sc_threshold": "1000000000", "qscale": "6"}
        for i in range(round(seconds * fps)):
            px = np.empty((h, w, 3), np.uint8)
            px[:] = ((ramp + i * 3) % 220).astype(np.uint8)[None, :, None]
            px += noise[i % 8]
            frame = av.VideoFrame.from_ndarray(px, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_all(path: Path) -> tuple[float, int]:
    import av

    t = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        for _ in c.decode(video=0):
            n += 1
    return time.perf_counter() - t, n


def sampled(path: Path, count: int) -> tuple[float, int, int]:
    t = time.perf_counter()
    with open(path, "rb") as fh:
        video = sample_video(fh, "MP4", count, (256, 256))
    return time.perf_counter() - t, video.decoded, len(video.frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clips", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [
            # (name, seconds, fps, size, gop): a keyframe every 10 s, and every 2 s
            ("2 h, 320x180, 2 fps, keyframe every 10 s", 7200, 2, (320, 180), 20),
            ("5 min, 640x360, 25 fps, keyframe every 10 s", 300, 25, (640, 360), 250),
            ("5 min, 640x360, 25 fps, keyframe every 2 s", 300, 25, (640, 360), 50),
        ]
        print(f"sampling {args.frames} frames (scan.video_frames) against decoding every frame")
        for name, seconds, fps, size, gop in cases:
            t = time.perf_counter()
            path = make_video(tmp / f"v{gop}_{seconds}.mp4", seconds, fps, size, gop)
            made = time.perf_counter() - t
            s_time, s_decoded, kept = sampled(path, args.frames)
            a_time, a_decoded = decode_all(path)
            print(
                f"  {name}: {path.stat().st_size / 2**20:.1f} MiB (made in {made:.0f} s); "
                f"sampled {kept} frames in {s_time:.2f} s decoding {s_decoded:,}; "
                f"every frame: {a_decoded:,} in {a_time:.2f} s ({a_time / s_time:.0f}x)"
            )

        folder = tmp / "clips"
        folder.mkdir()
        for i in range(args.clips):
            make_video(folder / f"clip_{i:03d}.mp4", 10, 25, (640, 360), 50, seed=i)
        scorer = load_builtin(threads=inference_threads(2))
        with Store.open(tmp / "home" / "store.db") as store:
            t = time.perf_counter()
            result = scan_folder(folder, scorer, store, ScanOptions(video_frames=args.frames))
            took = time.perf_counter() - t
        assert result.errors == 0 and result.scored == args.clips, result
        print(
            f"scan (built-in model, 2 decode workers): {args.clips} clips of 10 s 640x360 in "
            f"{took:.1f} s = {args.clips / took:.2f} videos/s, "
            f"{args.clips * args.frames / took:.0f} frames/s"
        )


if __name__ == "__main__":
    main()
