"""Shared helpers for the trainer tests: two families of generated images, a labelled store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from nsfw_tui.core.config import load_config
from nsfw_tui.core.home import Home
from nsfw_tui.core.labels import import_folders
from nsfw_tui.core.store import Store

# Small and quick enough for CI on two cores; the baseline still has to look at pixels.
FAST = [
    "data.input_size=[64,64]",
    "training.batch_size=16",
    "training.max_epochs=3",
]


def stripes(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Parallel bands of two random colours at a random angle and period."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 14)
    phase = rng.uniform(0, period)
    band = ((x * np.cos(angle) + y * np.sin(angle) + phase) // (period / 2)) % 2
    a = rng.integers(0, 256, 3)
    b = (a + 128 + rng.integers(-40, 41, 3)) % 256  # far from a in every channel: visible bands
    img = np.where(band[..., None] > 0, a, b) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def blobs(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A few soft ellipses of random colours on a plain background of a random colour."""
    img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.integers(0, size, 2)
        rx, ry = rng.integers(size // 8, size // 3, 2)
        draw.ellipse(
            (int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)),
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
    img = img.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _ground(rng: np.random.Generator, size: int) -> Image.Image:
    """A plain ground of a random colour, the same for both families: it tells nothing."""
    return Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(40, 216, 3)))


def _finish(img: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    img = img.filter(ImageFilter.GaussianBlur(1.5))
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _tint(rng: np.random.Generator, base: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple(int(c) for c in np.clip(np.array(base) + rng.normal(0, 30, 3), 0, 255))


def cool_bars(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """One to three blue-green bars at their own angles on a ground of any colour."""
    img = _ground(rng, size)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        half_len, half_wid = rng.uniform(0.2, 0.4) * size, rng.uniform(0.04, 0.08) * size
        a = rng.uniform(0, np.pi)
        along, across = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        corners = [
            tuple(np.array([cx, cy]) + i * half_len * along + j * half_wid * across)
            for i, j in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        draw.polygon(corners, fill=_tint(rng, (40, 140, 200)))
    return _finish(img, rng, size)


def warm_blobs(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """One to three round orange-pink blobs on a ground of any colour."""
    img = _ground(rng, size)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.1, 0.2) * size
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_tint(rng, (225, 150, 120)))
    return _finish(img, rng, size)


def write_family(folder: Path, kind: str, n: int, seed: int, size: int = 96) -> list[Path]:
    """``n`` images of one family; every third is a JPEG so both decoders are exercised."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    draw = {"stripes": stripes, "cool_bars": cool_bars, "warm_blobs": warm_blobs}.get(kind, blobs)
    paths = []
    for i in range(n):
        img = draw(rng, size)
        path = folder / f"{kind}_{i:03d}.{'jpg' if i % 3 == 0 else 'png'}"
        img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)
        paths.append(path)
    return paths


def make_dataset(root: Path, n_nsfw: int, n_sfw: int, seed: int = 0) -> Path:
    """root/nsfw holds stripes, root/sfw blobs: solvable only by looking at the images."""
    write_family(root / "nsfw", "stripes", n_nsfw, seed)
    write_family(root / "sfw", "blobs", n_sfw, seed + 1000)
    return root


def labelled_store(tmp: Path, n_nsfw: int = 40, n_sfw: int = 40, seed: int = 0) -> Path:
    """A store at tmp/home/store.db whose labels come from importing a generated dataset."""
    root = make_dataset(tmp / "data", n_nsfw, n_sfw, seed)
    home = tmp / "home"
    (home / "models").mkdir(parents=True, exist_ok=True)
    with Store.open(home / "store.db") as store:
        plan = [(root / label, label) for label in ("nsfw", "sfw") if (root / label).is_dir()]
        import_folders(store, plan)
    return home / "store.db"


def home_for(store_path: Path) -> Home:
    return Home(store_path.parent)


def config(*overrides: str, name: str = "baseline"):
    return load_config(name, [*FAST, *overrides])
