"""`nsfw-tui demo`: generated sample images in a home of its own (no real photos, no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .home import Home, resolve_home


def _scene(rng: np.random.Generator, size: tuple[int, int], palette: str) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if palette == "warm":  # skin-like tones: the kind of picture a moderator double-checks
        base = np.stack(
            [200 + 30 * np.sin(x / 60), 150 + 30 * np.cos(y / 50), 120 + 20 * np.sin((x + y) / 80)],
            -1,
        )
    elif palette == "sky":
        base = np.stack([90 + 0 * x, 140 + 60 * (y / h), 200 + 40 * (y / h)], -1)
    else:
        base = np.stack(
            [60 + 80 * (x / w), 120 + 60 * np.sin(y / 40), 70 + 40 * np.cos(x / 30)], -1
        )
    img = Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(h // 12, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
        else:
            draw.rectangle((x0 - r, y0 - r // 2, x0 + r, y0 + r // 2), fill=colour)
    return img.filter(ImageFilter.SMOOTH)


def make_demo(folder: Path, n: int = 24, seed: int = 7) -> Path:
    """Write the sample folder (idempotent: an existing one is left as it is)."""
    if folder.is_dir() and any(folder.rglob("*.jpg")):
        return folder
    rng = np.random.default_rng(seed)
    groups = {"beach": "warm", "city": "grey", "skies": "sky"}
    for i in range(n):
        group = list(groups)[i % len(groups)]
        sub = folder / group
        sub.mkdir(parents=True, exist_ok=True)
        size = (640, 480) if i % 2 else (480, 640)
        _scene(rng, size, groups[group]).save(sub / f"{group}_{i:02d}.jpg", quality=88)
    frames = [_scene(rng, (240, 180), "warm") for _ in range(3)]
    frames[0].save(folder / "beach" / "animated.gif", save_all=True, append_images=frames[1:])
    # A broken upload, as real folders have: shown with its reason, never as safe.
    (folder / "city" / "truncated.jpg").write_bytes(
        (folder / "city" / "city_01.jpg").read_bytes()[:2000]
    )
    return folder


def prepare_demo(home: Home) -> tuple[Home, Path]:
    """The demo's own home inside ``home`` and its sample folder, both made on first use.

    A home of its own (store, models, active model): labelling the samples adapts a head on
    them, and that head must never become the model that scores a person's real folders.
    The samples sit in a subfolder so the demo's store and models are not walked as images.
    """
    demo = resolve_home(home.demo_dir)
    return demo, make_demo(demo.root / "images")
