"""The adapted head and its file, its settings, and the built-in network's last layer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from .atomic import atomic_write
from .config_rules import same_as
from .config_schema import HEAD_KINDS, AdaptConfig, DupesConfig, MetricsConfig
from .errors import NsfwTuiError
from .scorers import BUILTIN_SHA256

KIND = "adapted"
FORMAT = "nsfw-tui-adapted"
FORMAT_VERSION = 1
KINDS = HEAD_KINDS
DIM = 1024


@dataclass
class Settings(AdaptConfig):
    """The `adapt:` section (defaults and rules in core/config_schema.py), ``metrics.target_recall``
    and the seed of the folds and of the mlp's first weights."""

    target_recall: float = same_as(MetricsConfig, "target_recall")
    seed: int = 0
    # near copies share a fold, so no image is scored by a head that saw its copy's label
    dupes_threshold: float = same_as(DupesConfig, "threshold")

    @classmethod
    def from_config(cls, cfg: Any, **extra: Any) -> Self:
        """From a whole loaded config: config_adapt's `adapt:`, `metrics:` (and `dupes:`)."""
        if cfg.get("dupes") is not None:
            extra.setdefault("dupes_threshold", cfg.dupes.threshold)
        return super().from_config(cfg.adapt, target_recall=cfg.metrics.target_recall, **extra)


# -- the built-in network's last layer --------------------------------------------------------

_FC: tuple[np.ndarray, float] | None = None


def builtin_logit_weights() -> tuple[np.ndarray, float]:
    """(w, b) with ``features @ w + b`` = open_nsfw's NSFW logit (softmax2 as a sigmoid)."""
    global _FC
    if _FC is None:
        import onnx
        from onnx import numpy_helper

        from .scorers import builtin_model_path

        path = builtin_model_path()
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != BUILTIN_SHA256:
            raise NsfwTuiError(f"the built-in model file {path} is damaged (checksum mismatch)")
        inits = {i.name: i for i in onnx.load_from_string(data).graph.initializer}
        w = numpy_helper.to_array(inits["fc_nsfw/MatMul/ReadVariableOp:0"]).astype(np.float64)
        b = numpy_helper.to_array(inits["fc_nsfw/BiasAdd/ReadVariableOp:0"]).astype(np.float64)
        _FC = (w[:, 1] - w[:, 0], float(b[1] - b[0]))
    return _FC


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread, where threadpoolctl is installed.

    The head's matrices are small: on 2 cores shared with the scan's inference threads, a
    second BLAS thread made a 1,000-label fit 5-10x slower (0.7-1.8 s against 0.1-0.2 s).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not a base dependency: BLAS keeps its own thread count
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# -- the head and its file --------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The fitted head on raw features: ``layers`` is [(W, b), ...], ReLU between, sigmoid last.

    Standardisation, the principal directions and the built-in logit are folded into the
    first layer, so applying the head is one or two matrix products on the features.
    """

    kind: str
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: np.ndarray) -> np.ndarray:
        # Rounded to float16 first, as the store caches them: a freshly decoded image and a
        # cached one get the same score.
        h = np.asarray(features, dtype=np.float16).astype(np.float32).reshape(-1, DIM)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """P(nsfw) per frame, float32, from (frames, 1024) features."""
        return _sigmoid(self.logits(features).astype(np.float64)).astype(np.float32)

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.kind.encode())
        for w, b in self.layers:
            h.update(np.ascontiguousarray(w, dtype="<f4").tobytes())
            h.update(np.ascontiguousarray(b, dtype="<f4").tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the head as one .npz (no pickle), atomically."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"] = np.asarray(w, dtype="<f4")
            arrays[f"b{i}"] = np.asarray(b, dtype="<f4")
        meta = {**self.meta, "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind}
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_write(path, "wb") as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            raise NsfwTuiError(f"cannot write the adapted model {path}: {exc}") from exc
        return path


def load_head(path: str | os.PathLike) -> Head:
    """Read a head written by :meth:`Head.save`; one clear error for anything else."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            n = sum(1 for k in z.files if k.startswith("w"))
            layers = tuple(
                (z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(n)
            )
    except FileNotFoundError:
        raise NsfwTuiError(f"the adapted model file {path} is missing") from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise NsfwTuiError(f"{path} is not an adapted-model file: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise NsfwTuiError(f"{path} is not an adapted-model file (format {meta.get('format')!r})")
    shapes_ok = (
        n in (1, 2)
        and layers[0][0].shape[0] == DIM
        and all(w.shape[1] == b.shape[0] for w, b in layers)
        and (n == 1 or layers[0][0].shape[1] == layers[1][0].shape[0])
        and layers[-1][0].shape[1] == 1
    )
    if not shapes_ok or meta.get("kind") not in KINDS:
        raise NsfwTuiError(f"{path} is not an adapted-model file (unexpected weights)")
    return Head(meta["kind"], layers, meta)
