"""Parity of an exported ONNX file with PyTorch: random inputs and real images, max abs diff."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_tui.core.images import decode_file
from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.store import Store
from nsfw_tui.models.onnx_files import cpu_session

# fp32 parity is measured at about 1e-6 (docs/reliability.md, M1); 1e-4 leaves room for other CPUs
# and kernels while still catching a wrong op or a missing sigmoid.
PARITY_ATOL = 1e-4
RANDOM_BATCHES = (1, 7, 32)
MAX_IMAGES = 1000


@dataclass
class Parity:
    random_max_diff: float
    random_n: int
    image_max_diff: float | None
    image_n: int
    image_source: str  # "validation", "labelled" or "none"
    flips: int  # decisions at the threshold that differ between PyTorch and onnxruntime
    # Inputs scored within PARITY_ATOL of the threshold: a tie at fp32 precision, not counted
    # as flips. The training threshold is itself one validation image's score, so one is usual.
    near_threshold: int = 0

    @property
    def max_diff(self) -> float:
        return max(self.random_max_diff, self.image_max_diff or 0.0)


def check_file(
    path: Path,
    module: Any,
    pixels: np.ndarray,
    pre: Preprocessing,
    threshold: float,
    dynamic: bool,
    source: str = "validation",
) -> Parity:
    """onnx.checker (full), then onnxruntime against ``module`` on random and real inputs."""
    import onnx
    import torch

    onnx.checker.check_model(os.fspath(path), full_check=True)
    session = cpu_session(path)
    h, w = pre.input_size
    rng = np.random.default_rng(0)
    random = [rng.standard_normal((n, 3, h, w)).astype(np.float32) for n in RANDOM_BATCHES]
    diffs: dict[str, float] = {}
    flips = near = 0
    for kind, batches in (("random", random), ("images", input_batches(pixels, 32, pre))):
        worst = 0.0
        for x in batches:
            with torch.inference_mode():
                ref = module(torch.from_numpy(x)).float().numpy().reshape(len(x))
            got = probabilities(session, x, dynamic)
            worst = max(worst, float(np.max(np.abs(got - ref))))
            tie = np.abs(ref - threshold) <= PARITY_ATOL
            flips += int(np.sum(((got >= threshold) != (ref >= threshold)) & ~tie))
            near += int(np.sum(tie)) if kind == "images" else 0
        diffs[kind] = worst
    return Parity(
        diffs["random"],
        sum(RANDOM_BATCHES),
        diffs["images"] if len(pixels) else None,
        len(pixels),
        source if len(pixels) else "none",
        flips,
        near,
    )


def probabilities(session: Any, x: np.ndarray, dynamic: bool) -> np.ndarray:
    """``session``'s P(nsfw) for the batch ``x``, one image at a time where the file is static."""
    name = session.get_inputs()[0].name
    if dynamic:
        return np.asarray(session.run(None, {name: x})[0], dtype=np.float32).reshape(len(x))
    return np.concatenate([probabilities(session, x[i : i + 1], True) for i in range(len(x))])


def input_batches(pixels: np.ndarray, n: int, pre: Preprocessing) -> Iterable[np.ndarray]:
    """Model inputs in batches of ``n`` (pixels stay uint8 until then: 4x less memory)."""
    for i in range(0, len(pixels), n):
        yield pre.tensor(pixels[i : i + n])


def real_images(
    store: Store, run_id: str | None, pre: Preprocessing, limit: int = MAX_IMAGES
) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, H, W, 3) uint8 pixels through the serving decoder, their labels, and their source.

    The run's validation images where the run is known and they are still on disk, else
    every labelled image (capped at ``limit``); unreadable files are skipped.
    """
    files = {r.sha256: (r.path, r.label) for r in store.labelled_files() if r.path}
    record = store.run(run_id) if run_id else None
    val = [s for s in (record.val_hashes if record else []) if s in files]
    chosen, source = (val, "validation") if val else (sorted(files), "labelled")
    pixels, labels = [], []
    for sha in chosen:
        if len(pixels) >= limit:
            break
        path, label = files[sha]
        try:
            decoded = decode_file(path, pre, use_draft=True, max_frames=1)
        except Exception:  # ImageError, or a decoder bug: one file must not stop the export
            continue
        pixels.append(decoded.pixels[0])
        labels.append(1 if label == "nsfw" else 0)
    if not pixels:
        h, w = pre.input_size
        return np.zeros((0, h, w, 3), np.uint8), np.zeros(0, np.int64), "none"
    return np.stack(pixels), np.asarray(labels), source
