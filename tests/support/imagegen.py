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
from PIL import Image, ImageDraw


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


def photo_array(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Photo-like uint8 (h, w, 3): gradients, a few discs, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / max(1, w / 3) + seed),
            128 + 100 * np.cos(y / max(1, h / 2) - seed),
            128 + 80 * np.sin((x + y) / max(1, w / 4)),
        ],
        axis=-1,
    )
    for _ in range(3):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), max(1, min(w, h) // 5)
        base[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    base += rng.normal(0, 10, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def family_image(family: str, i: int, size: int = 128) -> Image.Image:
    """Image ``i`` of a family (blob, dark, photo) that the adaptation tests label."""
    if family == "photo":
        return photo((size, size), 2000 + i)
    dark = family == "dark"
    rng = np.random.default_rng(i + (1000 if dark else 0))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    ground = (np.array([60, 50, 45]) if dark else np.array([200, 170, 150])) + rng.normal(0, 10, 3)
    img = np.ones((size, size, 3), np.float32) * ground
    for _ in range(2 if dark else 3):
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        rx, ry = rng.uniform(*((0.25, 0.4) if dark else (0.15, 0.35)), 2) * size
        d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        a = np.clip(1.2 - d, 0, 1)[..., None]
        skin = np.array([225, 170, 140]) + rng.normal(0, 12, 3)
        img = img * (1 - a) + skin * a * (1 - 0.25 * d[..., None].clip(0, 1))
        if dark:
            spot = np.clip(1.5 - ((x - cx) ** 2 + (y - cy) ** 2) / (0.04 * size) ** 2, 0, 1)
            img = img * (1 - spot[..., None]) + np.array([150, 80, 70]) * spot[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _field(rng, w: int, h: int, cells: int) -> Image.Image:
    """A smooth random colour field: a few cells upscaled."""
    small = rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A structured scene of one of several kinds: no two seeds draw the same picture."""
    rng = np.random.default_rng(seed)
    w, h = size
    kind = seed % 4
    if kind == 0:
        im = photo(size, seed=seed)
    elif kind == 1:
        im = _field(rng, w, h, int(rng.integers(2, 6)))
    elif kind == 2:
        a = np.zeros((h, w, 3), np.float32)
        y, x = np.mgrid[0:h, 0:w]
        ang, f = rng.uniform(0, np.pi), rng.uniform(0.02, 0.3)
        s = np.sin((x * np.cos(ang) + y * np.sin(ang)) * f)
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        a[:] = np.where(s[..., None] > 0, c1, c2)
        im = Image.fromarray(a.astype(np.uint8))
    else:
        im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = int(rng.integers(-20, w - 20)), int(rng.integers(-20, h - 20))
        x1, y1 = x0 + int(rng.integers(15, w // 2)), y0 + int(rng.integers(15, h // 2))
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            d.rectangle([x0, y0, x1, y1], fill=c)
        elif shape == 1:
            d.ellipse([x0, y0, x1, y1], fill=c)
        else:
            d.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=c)
    for _ in range(int(rng.integers(1, 4))):
        d.text(
            (int(rng.integers(0, w - 60)), int(rng.integers(0, h - 20))),
            f"#{seed} {rng.integers(1000)}",
            fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
            font_size=int(rng.integers(12, 40)),
        )
    return im


def variants(im: Image.Image) -> dict[str, Image.Image]:
    """Near copies of ``im``: half size, JPEG quality 40, 5% and 10% crops."""
    w, h = im.size
    out = {}
    out["resize"] = im.resize((w // 2, h // 2), Image.BILINEAR)
    b = io.BytesIO()
    im.save(b, "JPEG", quality=40)
    out["jpeg40"] = Image.open(io.BytesIO(b.getvalue())).convert("RGB")
    dx, dy = int(w * 0.05), int(h * 0.05)
    out["crop5"] = im.crop((dx, dy, w - dx, h - dy))
    dx, dy = int(w * 0.10), int(h * 0.10)
    out["crop10"] = im.crop((dx, 0, w - dx, h - dy))
    return out


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


def zero_tailed(path: Path, fraction: float = 0.6, seed: int = 0, **save_kwargs) -> Path:
    """A photo as an interrupted or preallocated download leaves it: full size, zeros from
    ``fraction`` of its bytes on (P12). The format comes from the suffix."""
    buf = io.BytesIO()
    photo((240, 180), seed).save(buf, Image.registered_extensions()[path.suffix], **save_kwargs)
    data = buf.getvalue()
    cut = int(len(data) * fraction)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:cut] + bytes(len(data) - cut))
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


class StartsOnce:
    """Preprocessing that only the first worker process can load: later ones die at start.

    Unpickling it in a worker claims ``marker``; a worker that finds the marker taken exits
    at once, as a worker that cannot start would.
    """

    def __init__(self, spec, marker: str) -> None:
        self.spec, self.marker = spec, marker

    def __reduce__(self):
        return (_load_once, (self.spec, self.marker))


def _load_once(spec, marker: str):
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        os._exit(3)
    return spec


def variant_folder(folder: Path, seeds: range) -> dict[Path, int]:
    """Each seed's scene and its near copies as files; returns path -> the seed it shows."""
    out: dict[Path, int] = {}
    for seed in seeds:
        base = scene(seed)
        out[save(base, folder / f"s{seed}.png")] = seed
        for kind, image in variants(base).items():
            out[save(image, folder / f"s{seed}_{kind}.png")] = seed
    return out


def grouping_figures(group_of: dict[Path, int | None], truth: dict[Path, int]) -> tuple[float, int]:
    """(recall, false merges) of a grouping against the seeds the files show.

    Recall: the share of near copies in their original's group. False merges: originals
    that share a group with another original.
    """
    originals = {seed: p for p, seed in truth.items() if p.stem == f"s{seed}"}
    copies = [p for p, seed in truth.items() if p != originals[seed]]
    hits = [
        group_of[p] is not None and group_of[p] == group_of[originals[truth[p]]] for p in copies
    ]
    groups = [group_of[p] for p in originals.values()]
    merged = sum(1 for g in groups if g is not None and groups.count(g) > 1)
    return sum(hits) / len(hits), merged


def high_frequency(image: Image.Image) -> float:
    """Mean absolute difference of neighbouring grey pixels: what a blur must take away."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean())


def noisy(path: Path, red: tuple[int, int], seed: int) -> Path:
    """Noise whose red channel lies in ``red``: the fake scorer's P is about its mean / 255."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    px[..., 0] = rng.integers(red[0], red[1], (192, 256), dtype=np.uint8)
    return save(Image.fromarray(px, "RGB"), path)
