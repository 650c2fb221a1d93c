"""Synthetic test images drawn into a folder: photo-like, varied, and deliberately broken."""

from __future__ import annotations

import io
import os
import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(size: tuple[int, int] = (320, 240), seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients, a few shapes, fine noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / (w / (1 + seed % 5)) + seed),
            128 + 100 * np.cos(y / (h / (2 + seed % 3)) - seed),
            128 + 80 * np.sin((x + y) / (w / 3)),
        ],
        axis=-1,
    )
    for _ in range(4):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(h // 10, h // 3)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        base[mask] = rng.integers(0, 255, 3)
    base += rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def photo_folder(folder: Path, n: int, size: tuple[int, int] = (320, 240)) -> list[Path]:
    return [save(photo(size, i), folder / f"img_{i:03d}.jpg", quality=90) for i in range(n)]


def png_header_bomb(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def truncated_jpeg(path: Path, fraction: float = 0.5, seed: int = 0) -> Path:
    buf = io.BytesIO()
    photo((400, 300), seed).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def animated_gif(path: Path, colours: list[tuple[int, int, int]], size=(64, 64)) -> Path:
    frames = [Image.new("RGB", size, c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


# Decoders for the pool's fault tests: module-level so spawned workers can import them.
def faulty_decoder(path: str, spec, use_draft: bool, max_frames: int):
    from nsfw_tui.core.decode_pool import decode_path

    name = os.path.basename(path)
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in name:
        time.sleep(120)
    return decode_path(path, spec, use_draft, max_frames)
