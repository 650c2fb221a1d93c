"""Adaptation: a small head fitted on the built-in network's cached features, in seconds, offline.

The head sees the 1024 pooled features of open_nsfw (as the store caches them, float16) and
the network's own NSFW logit. It is logistic regression or a one-hidden-layer MLP, class
balanced, its L2 strength chosen by cross-validation over the labelled images; its threshold
comes from the out-of-fold scores. Saved as one .npz (weights + JSON metadata, no pickle),
registered as a model of kind ``adapted``, and applied to every image whose features are
cached without decoding a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, NsfwTuiError
from .metrics import auroc, confusion, threshold_for_recall
from .preprocess import OPEN_NSFW
from .scorers import BUILTIN_FEATURES, BUILTIN_ID, BUILTIN_SHA256, BUILTIN_THRESHOLD
from .store import ModelRow, Store

KIND = "adapted"
FORMAT = "nsfw-tui-adapted"
FORMAT_VERSION = 1
KINDS = ("logreg", "mlp")
DIM = 1024
# The head is fitted in the span of the top principal directions of the labelled features:
# exact logistic regression up to this many labelled frames, a spectral cut beyond (the L2
# penalty already shrinks the low-variance directions), and what keeps a fit under a second.
MAX_COMPONENTS = 128
MLP_COMPONENTS = 48  # the MLP's input width: Adam steps cost inputs x hidden x problems
MLP_STEPS = 150
BASIS_ROWS = 2048  # rows the principal directions are computed from (a seeded sample)
# The built-in logit's weight is penalised this lightly (the bias not at all): with few
# labels or a small C the head falls back to a recalibrated built-in model, not to a coin.
LOGIT_PENALTY = 1e-3
_CHUNK = 900  # below SQLite's bound-parameter limit


class NotEnoughLabels(NsfwTuiError):
    """Too few labelled images with cached features; ``needed`` says how many more per class."""

    def __init__(self, message: str, needed: dict[str, int], have: dict[str, int], skipped: int):
        super().__init__(message)
        self.needed, self.have, self.skipped = needed, have, skipped


@dataclass(frozen=True)
class Settings:
    """What `configs/config_adapt.yaml` says under ``adapt`` (and ``metrics.target_recall``)."""

    kind: str = "logreg"
    c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    hidden: int = 32
    folds: int = 5
    min_labels_per_class: int = 5
    auto_every: int = 20
    target_recall: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            (self.kind in KINDS, "adapt.kind", f"one of {', '.join(KINDS)}", self.kind),
            (bool(self.c_grid) and min(self.c_grid) > 0, "adapt.c_grid",
             "a list of positive numbers", list(self.c_grid)),
            (self.hidden >= 1, "adapt.hidden", "an integer >= 1", self.hidden),
            (self.folds >= 2, "adapt.folds", "an integer >= 2", self.folds),
            (self.min_labels_per_class >= 2, "adapt.min_labels_per_class", "an integer >= 2",
             self.min_labels_per_class),
            (self.auto_every >= 0, "adapt.auto_every", "an integer >= 0", self.auto_every),
            (0 < self.target_recall <= 1, "metrics.target_recall", "a number in (0, 1]",
             self.target_recall),
        )  # fmt: skip
        for ok, key, what, value in checks:
            if not ok:
                raise ConfigError(f"{key}: expected {what}, got {value!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> Settings:
        a = cfg.adapt
        try:
            return cls(
                kind=str(a.kind),
                c_grid=tuple(float(c) for c in a.c_grid),
                hidden=int(a.hidden),
                folds=int(a.folds),
                min_labels_per_class=int(a.min_labels_per_class),
                auto_every=int(a.auto_every),
                target_recall=float(cfg.metrics.target_recall),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"adapt: {exc}") from None


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
        tmp = path.with_name(f".{path.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
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


def register_head(store: Store, path: str | os.PathLike, *, activate: bool = False) -> ModelRow:
    """Register an adapted-model file (from this or another home) as a model of the store."""
    head = load_head(path)
    model_id = head.meta.get("model_id") or f"adapted-{head.digest[:10]}"
    with store.write():
        store.add_model(
            model_id, KIND, threshold=float(head.meta["threshold"]),
            path=os.fspath(Path(path).resolve()), metrics=head.meta.get("metrics") or {},
            preprocessing=OPEN_NSFW.to_dict(), meta=_row_meta(head), activate=activate,
        )  # fmt: skip
        store.set_threshold(model_id, float(head.meta["threshold"]))
    row = store.model(model_id)
    assert row is not None
    return row


def _row_meta(head: Head) -> dict[str, Any]:
    keep = ("head", "c", "hidden", "labels", "base_model", "cv", "builtin", "reference",
            "decision", "target_recall")  # fmt: skip
    return {k: head.meta[k] for k in keep if k in head.meta}


# -- cached features --------------------------------------------------------------------------


@dataclass
class Features:
    """Cached built-in features: one row per frame, frames of an image together, shas sorted."""

    shas: list[str]
    frames: np.ndarray  # (m, 1024) float16
    owner: np.ndarray  # (m,) index into shas

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=len(self.shas))


def feature_sources(store: Store) -> list[str]:
    """Model ids whose cached features are the built-in network's (its own, adapted models').

    An adapted scorer caches the built-in features it computed under its own id (the scan
    pipeline stores features under the scorer's id); they are the same numbers, so every
    adaptation finds them. The built-in id comes first and wins where both are cached.
    """
    ids = [m.id for m in store.models() if m.kind == KIND and m.id != BUILTIN_ID]
    return [BUILTIN_ID, *ids]


_SELECT = (
    "SELECT sha256, model_id, vector FROM features WHERE model_id IN ({sources}){shas} "
    "ORDER BY sha256, model_id, frame"  # the primary key's order: no sort of the blobs
)


def _query(sources: Sequence[str], n_shas: int = 0) -> str:
    shas = f" AND sha256 IN ({','.join('?' * n_shas)})" if n_shas else ""
    return _SELECT.format(sources=",".join("?" * len(sources)), shas=shas)


def _images(rows: Iterable[tuple[str, str, bytes]]) -> Iterator[tuple[str, list[bytes]]]:
    """(sha, frame vectors) per image from rows in primary-key order; the built-in's first."""
    for sha, group in itertools.groupby(rows, key=lambda row: row[0]):
        by_model: dict[str, list[bytes]] = {}
        for _, model_id, blob in group:
            if len(blob) == 2 * DIM:  # 1024 float16 values; anything else is not these features
                by_model.setdefault(model_id, []).append(blob)
        if by_model:
            yield sha, by_model.get(BUILTIN_ID) or next(iter(by_model.values()))


def _features(images: Iterable[tuple[str, list[bytes]]]) -> Features:
    shas: list[str] = []
    owner: list[int] = []
    blobs: list[bytes] = []
    for sha, frames in images:
        owner.extend([len(shas)] * len(frames))
        shas.append(sha)
        blobs.extend(frames)
    frames16 = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(-1, DIM)
    return Features(shas, frames16, np.asarray(owner, dtype=np.int64))


def cached_features(store: Store, shas: Sequence[str] | None = None) -> Features:
    """Built-in features of ``shas`` (every cached image when None); images without are left out."""
    sources = feature_sources(store)
    if shas is None:
        return _features(_images(store.conn.execute(_query(sources), sources)))
    wanted = sorted(set(shas))

    def rows() -> Iterator[tuple[str, str, bytes]]:
        for i in range(0, len(wanted), _CHUNK):  # sorted chunks: rows stay in sha order
            part = wanted[i : i + _CHUNK]
            yield from store.conn.execute(_query(sources, len(part)), [*sources, *part])

    return _features(_images(rows()))


def iter_cached_features(store: Store, chunk: int = 8192) -> Iterator[Features]:
    """Every image with cached built-in features, ``chunk`` images at a time (bounded memory)."""
    sources = feature_sources(store)
    images = _images(store.conn.execute(_query(sources), sources))
    while batch := list(itertools.islice(images, chunk)):
        yield _features(batch)


def image_max(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per-image maximum over its frames (frames of an image are contiguous)."""
    starts = np.searchsorted(owner, np.arange(n))
    return np.maximum.reduceat(values, starts, axis=0) if n else values[:0]


# -- fitting ----------------------------------------------------------------------------------


@dataclass
class Fit:
    """A fitted head and what cross-validation said about its recipe."""

    head: Head
    c: float
    cv_probs: np.ndarray  # (n,) out-of-fold P(nsfw) per image, at the chosen C
    builtin_probs: np.ndarray  # (n,) the built-in network's P(nsfw) per image
    folds: np.ndarray  # (n,) the fold each image was held out in
    cv_loss: dict[float, float]  # balanced log-loss of the out-of-fold scores per C
    seconds: float


def assign_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Stratified folds over images (an image, all its frames and paths, is one unit)."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        folds[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % k
    return folds


def _teaching_frames(logit: np.ndarray, owner: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which frames teach the head: every frame of an SFW image, one of an NSFW image.

    An NSFW animation may hold SFW frames; its most NSFW frame by the built-in network is
    the one its label speaks for (scoring takes the highest frame, so this matches it).
    """
    used = y[owner] == 0
    counts = np.bincount(owner, minlength=len(y))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for i in np.flatnonzero(y == 1):
        s = starts[i]
        used[s + int(np.argmax(logit[s : s + counts[i]]))] = True
    return used


def _basis(xs: np.ndarray, r: int, rng: np.random.Generator) -> np.ndarray:
    """(1024, <=r) orthonormal top principal directions of the standardised rows ``xs``."""
    rows = xs if len(xs) <= BASIS_ROWS else xs[np.sort(rng.choice(len(xs), BASIS_ROWS, False))]
    if len(rows) <= r:
        # Exact: the span of every labelled row, so the fit is plain logistic regression.
        rows64 = rows.astype(np.float64)
        lam, u = np.linalg.eigh(rows64 @ rows64.T)
        keep = lam > max(lam.max(), 1e-30) * 1e-9
        return (rows64.T @ u[:, keep]) / np.sqrt(lam[keep])
    # Randomised range finder with one power iteration; every factorisation is of a small
    # (r+10)-square matrix, so no LAPACK call sees the big one (they crawl on busy cores).
    y = rows @ rng.standard_normal((DIM, r + 10)).astype(np.float32)
    y = rows @ (rows.T @ _orthonormal(y))
    b = (_orthonormal(y).T @ rows).astype(np.float64)  # (r+10, 1024), same row space
    lam, u = np.linalg.eigh(b @ b.T)
    top = np.argsort(lam)[::-1][:r]
    top = top[lam[top] > lam.max() * 1e-9]
    return (b.T @ u[:, top]) / np.sqrt(lam[top])


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of ``y`` (eigen-decomposition of the Gram)."""
    lam, u = np.linalg.eigh((y.T @ y).astype(np.float64))
    keep = lam > lam.max() * 1e-10
    return y @ (u[:, keep] / np.sqrt(lam[keep])).astype(y.dtype)


def _balanced_weights(y: np.ndarray, owner: np.ndarray, used: np.ndarray, train: np.ndarray):
    """Per-frame weights: each class weighs the same, each image once (spread on its frames)."""
    img = np.zeros(len(y))
    for cls in (0, 1):
        members = train & (y == cls)
        if members.any():
            img[members] = train.sum() / (2.0 * members.sum())
    per_frame = used.astype(np.float64)
    frames_used = np.bincount(owner, weights=per_frame, minlength=len(y))
    return per_frame * img[owner] / np.maximum(frames_used[owner], 1.0)


def _logreg(
    a: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray, pen: np.ndarray,
    start: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Newton's method on P L2-penalised logistic regressions at once.

    Minimises ``c_p * sum_i w_pi * log-loss_i + 0.5 * sum_j pen_j * coef_pj**2`` for each
    problem p over the columns of ``a`` (m, q), from ``start`` (P, q) or zero.
    """
    n_prob, q = len(c), a.shape[1]
    a32 = a.astype(np.float32)
    cw = w * c[:, None]  # (P, m)
    sign = 2.0 * y - 1.0

    def objective(coef: np.ndarray) -> np.ndarray:
        eta = coef @ a.T
        return (cw * np.logaddexp(0.0, -sign * eta)).sum(1) + 0.5 * (pen * coef**2).sum(1)

    coef = np.zeros((n_prob, q)) if start is None else start.copy()
    obj = objective(coef)
    ridge = np.diag(pen + 1e-8)
    for _ in range(50):
        p = _sigmoid(coef @ a.T)  # (P, m)
        grad = (cw * (p - y)) @ a + pen * coef
        d = cw * p * (1.0 - p)
        root = np.sqrt(np.where(d > 1e-20, d, 0.0)).astype(np.float32)  # no denormals in BLAS
        hess = np.empty((n_prob, q, q))
        for k in range(n_prob):
            s = a32 * root[k][:, None]
            hess[k] = s.T @ s  # one symmetric rank-k update
        step = np.linalg.solve(hess + ridge, grad[..., None])[..., 0]
        t = np.ones(n_prob)
        for _ in range(30):  # halve the step of each problem until its objective does not rise
            new = coef - t[:, None] * step
            new_obj = objective(new)
            worse = new_obj > obj + 1e-12 * np.abs(obj)
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        else:  # no descent left: those problems are at their optimum
            new, new_obj = np.where(worse[:, None], coef, new), np.where(worse, obj, new_obj)
        gain = np.max((obj - new_obj) / np.maximum(np.abs(obj), 1e-12))
        coef, obj = new, new_obj
        if gain < 1e-9:
            break
    return coef


def _mlp(u: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray, hidden: int, seed: int):
    """Full-batch Adam on P one-hidden-layer ReLU MLPs at once (L2 of 1/c on the weights).

    float32 throughout: the P copies of the (m, hidden) activations are most of the work.
    """
    f32 = np.float32
    n_prob, q = len(c), u.shape[1]
    rng = np.random.default_rng(seed)
    # He initialisation for inputs whose squared norm is about DIM (standardised features)
    w1 = rng.standard_normal((q, hidden)) * np.sqrt(2.0 / DIM)
    w2 = rng.standard_normal(hidden) * 0.1 / np.sqrt(hidden)
    params = [
        np.repeat(w1[None], n_prob, 0).astype(f32), np.zeros((n_prob, hidden), f32),
        np.repeat(w2[None], n_prob, 0).astype(f32), np.zeros(n_prob, f32),
    ]  # fmt: skip
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    total = w.sum(1)
    sw = (w / total[:, None]).astype(f32)
    lam = (1.0 / (c * total)).astype(f32)
    yf = y.astype(f32)
    ut = np.ascontiguousarray(u.T)
    lr, b1, b2, eps = 0.02, 0.9, 0.999, 1e-8
    for step in range(1, MLP_STEPS + 1):
        W1, B1, W2, B2 = params
        pre = np.matmul(u, W1)  # (P, m, H)
        pre += B1[:, None, :]
        act = np.maximum(pre, 0.0, out=pre)
        p = _sigmoid(np.matmul(act, W2[:, :, None])[..., 0] + B2[:, None])
        d = sw * (p - yf)  # (P, m)
        d_pre = d[:, :, None] * W2[:, None, :]
        d_pre *= act > 0
        grads = [
            np.matmul(ut, d_pre) + lam[:, None, None] * W1,
            d_pre.sum(1),
            np.matmul(d[:, None, :], act)[:, 0, :] + lam[:, None] * W2,
            d.sum(1),
        ]
        lr_t = lr * np.sqrt(1 - b2**step) / (1 - b1**step)
        for i, g in enumerate(grads):
            m1[i] *= b1
            m1[i] += (1 - b1) * g
            m2[i] *= b2
            m2[i] += (1 - b2) * g * g
            params[i] -= (lr_t * m1[i] / (np.sqrt(m2[i]) + eps)).astype(f32)
    return params


def _mlp_forward(u: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
    W1, B1, W2, B2 = params
    act = np.maximum(np.matmul(u, W1) + B1[:, None, :], 0.0)
    return _sigmoid(np.matmul(act, W2[:, :, None])[..., 0] + B2[:, None]).astype(np.float64)


def _balanced_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(0.5 * (-np.log(p[y == 1]).mean() - np.log(1 - p[y == 0]).mean()))


def fit_head(
    frames: np.ndarray, owner: np.ndarray, y: np.ndarray, settings: Settings | None = None
) -> Fit:
    """Fit the head on cached features; C by k-fold cross-validation over images.

    ``frames`` (m, 1024) float16 features, ``owner`` (m,) the image of each frame (frames of
    an image contiguous), ``y`` (n,) 1 NSFW / 0 SFW per image. No image is scored by a
    head whose training saw its label: held-out images weigh zero in their fold's fit.
    Standardisation and principal directions use every labelled image's features, which
    involves no label.
    """
    with one_blas_thread():
        return _fit_head(frames, owner, y, settings or Settings())


def _fit_head(frames: np.ndarray, owner: np.ndarray, y: np.ndarray, settings: Settings) -> Fit:
    started = time.perf_counter()
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    n_pos, n_neg = int(y.sum()), int(n - y.sum())
    if min(n_pos, n_neg) < 2:
        raise NsfwTuiError("fitting a head needs at least 2 images of each class")
    owner = np.asarray(owner, dtype=np.int64)
    x = np.asarray(frames, dtype=np.float16).astype(np.float32)
    w_fc, b_fc = builtin_logit_weights()
    logit = x.astype(np.float64) @ w_fc + b_fc
    builtin_probs = image_max(_sigmoid(logit), owner, n)
    used = _teaching_frames(logit, owner, y.astype(np.int64))
    k = min(settings.folds, n_pos, n_neg)
    folds = assign_folds(y.astype(np.int64), k, settings.seed)
    rng = np.random.default_rng(settings.seed)

    mu = x.mean(0)
    sd = x.std(0)
    sigma = np.maximum(sd, 1e-2 * max(float(np.median(sd)), 1e-6)).astype(np.float32)
    xs = (x - mu) / sigma
    mu_l, sigma_l = float(logit.mean()), float(max(logit.std(), 1e-6))
    ls = (logit - mu_l) / sigma_l
    basis = _basis(xs, MAX_COMPONENTS, rng)  # (1024, r)
    z = (xs @ basis.astype(np.float32)).astype(np.float64)  # (m, r)

    grid = sorted(set(settings.c_grid))
    y_frames = y[owner]
    all_c = np.array(grid)
    all_w = np.repeat(_balanced_weights(y, owner, used, np.ones(n, bool))[None], len(grid), 0)
    cv_weights = np.stack([
        _balanced_weights(y, owner, used, folds != f) for f in range(k) for _ in grid
    ])  # fmt: skip
    cv_c = np.tile(all_c, k)
    if settings.kind == "logreg":
        a = np.column_stack([z, ls, np.ones(len(z))])
        pen = np.concatenate([np.ones(z.shape[1]), [LOGIT_PENALTY, 0.0]])
        # every C on all images first; each fold's fit then starts from its C's solution,
        # a few Newton steps away
        final_all = _logreg(a, y_frames, all_w, all_c, pen)
        cv_fit = _logreg(a, y_frames, cv_weights, cv_c, pen, np.tile(final_all, (k, 1)))
        frame_probs = _sigmoid(cv_fit @ a.T)
    else:
        q = min(MLP_COMPONENTS, z.shape[1])
        # Inputs in standardised-feature units (as the logistic head's): the L2 penalty then
        # prefers the directions the features vary in. The logit column is scaled up to the
        # whole block's size, so its weight is penalised as lightly as in the logistic head.
        logit_scale = float(np.sqrt(DIM))
        u = np.column_stack([z[:, :q], ls * logit_scale]).astype(np.float32)
        params = _mlp(u, y_frames, cv_weights, cv_c, settings.hidden, settings.seed)
        frame_probs = _mlp_forward(u, params)

    img_probs = image_max(frame_probs.T, owner, n)  # (n, k * len(grid))
    cv = {}
    loss = {}
    for j, c in enumerate(grid):
        oof = img_probs[np.arange(n), folds * len(grid) + j]
        cv[c], loss[c] = oof, _balanced_log_loss(y, oof)
    best = min(grid, key=lambda c: (round(loss[c], 12), c))
    j = grid.index(best)
    # Fold the standardisation, the principal directions and the logit into the first layer.
    if settings.kind == "logreg":
        a_z, a_l, a_b = final_all[j, :-2], final_all[j, -2], final_all[j, -1]
        direction = basis @ a_z  # weights on standardised features
        w_eff = direction / sigma + a_l * w_fc / sigma_l
        b_eff = a_b - float((mu / sigma) @ direction) + a_l * (b_fc - mu_l) / sigma_l
        layers = ((w_eff[:, None], np.array([b_eff])),)
        hidden = None
    else:  # one more run, on all images at the chosen C
        final = _mlp(u, y_frames, all_w[:1], all_c[j : j + 1], settings.hidden, settings.seed)
        W1, B1, W2, B2 = (p[0] for p in final)
        m = np.zeros((DIM, q + 1))
        m[:, :q] = basis[:, :q] / sigma[:, None]
        m[:, q] = w_fc * logit_scale / sigma_l
        c0 = np.concatenate([-(mu / sigma) @ basis[:, :q], [(b_fc - mu_l) * logit_scale / sigma_l]])
        layers = ((m @ W1, c0 @ W1 + B1), (W2[:, None], np.array([B2])))
        hidden = settings.hidden
    layers = tuple((w.astype(np.float32), b.astype(np.float32)) for w, b in layers)
    head = Head(settings.kind, layers, {"head": settings.kind, "c": best, "hidden": hidden})
    return Fit(head, best, cv[best], builtin_probs, folds, loss, time.perf_counter() - started)


# -- adapting a store -------------------------------------------------------------------------


@dataclass
class Adaptation:
    """What one adaptation did: the model, its figures beside the built-in's, the decision."""

    model_id: str
    path: Path
    kind: str
    c: float
    threshold: float
    labels: dict[str, int]  # NSFW / SFW images the head learnt from
    skipped: int  # labelled images without cached features (not used)
    cv: dict[str, float | None]  # the head's out-of-fold recall, fpr, precision, auroc
    builtin: dict[str, float | None]  # the built-in model on the same labels, its threshold
    reference: dict[str, Any]  # what "beats" compared with (id and the same figures)
    activated: bool
    decision: str  # one line: why it is active or not
    previous_id: str | None  # the model active before
    rescored: int
    flips: dict[str, int]  # calls changed against the previous model: to_nsfw, to_sfw, compared
    predictions: dict[str, float] = field(repr=False, default_factory=dict)
    fit_s: float = 0.0
    rescore_s: float = 0.0


def choose_threshold(y: np.ndarray, p: np.ndarray, target_recall: float) -> float:
    """The highest threshold reaching ``target_recall``, lowered halfway to the next score.

    The out-of-fold recall and false alarms stay the same (no score lies in between); a new
    image a little less NSFW than the least NSFW labelled one is still caught.
    """
    t = threshold_for_recall(y, p, target_recall)
    if t is None:
        raise NsfwTuiError("no NSFW-labelled images: recall cannot be measured, so no threshold")
    below = p[p < t]
    return float((t + below.max()) / 2) if len(below) else float(t)


def figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | None]:
    c = confusion(y, p, threshold)
    return {"recall": c.recall, "fpr": c.fpr, "precision": c.precision,
            "auroc": auroc(y, p), "threshold": float(threshold), "n": float(len(y))}  # fmt: skip


def _check_enough(have: dict[str, int], skipped: int, settings: Settings) -> None:
    need = {c: max(0, settings.min_labels_per_class - have[c]) for c in ("nsfw", "sfw")}
    if not any(need.values()):
        return
    more = " and ".join(f"{n} more {c.upper()}" for c, n in need.items() if n)
    note = (
        f" ({skipped} labelled image{'s' * (skipped != 1)} have no cached features yet: "
        "scan them with the built-in or an adapted model)"
        if skipped
        else ""
    )
    raise NotEnoughLabels(
        f"adapting needs {settings.min_labels_per_class} NSFW and "
        f"{settings.min_labels_per_class} SFW labels on scored images: {more} needed{note}",
        need, have, skipped,
    )  # fmt: skip


def _compare(
    store: Store, previous: ModelRow | None, shas: list[str], y: np.ndarray, fit: Fit,
    threshold: float, builtin: dict[str, Any], target: float,
) -> tuple[dict[str, Any], bool, str]:  # fmt: skip
    """Does the head beat the active model on the labelled images? (reference, beats, why).

    Beats: a higher out-of-fold AUROC, and recall at its threshold no lower than the
    reference's at its own (or than the target recall, where the reference's is higher).
    An active built-in or adapted model is compared through the built-in network: an
    earlier head saw some of these labels, so its scores on them are not out-of-fold. A
    trained model is compared on its cached scores, which may include its training images.
    """
    if previous is None or previous.kind in ("builtin", KIND):
        ref_id, ref_p, ref_t = BUILTIN_ID, fit.builtin_probs, float(builtin["threshold"] or 0.0)
        mask = np.ones(len(y), dtype=bool)
    else:
        cached = store.predictions(previous.id, shas)
        mask = np.array([s in cached for s in shas])
        ref_p = np.array([cached.get(s, np.nan) for s in shas])
        ref_id, ref_t = previous.id, previous.threshold
    ym, new_p, ref_p = y[mask], fit.cv_probs[mask], ref_p[mask]
    active = previous.id if previous else BUILTIN_ID
    if ym.sum() == 0 or ym.sum() == len(ym):
        why = f"{ref_id} has no scores on labelled images of both classes"
        return {"model_id": ref_id, "n": float(len(ym))}, False, f"{why}; {active} stays active"
    reference = {"model_id": ref_id, **figures(ym, ref_p, ref_t)}
    new = figures(ym, new_p, threshold)
    a_new, a_ref = new["auroc"] or 0.0, reference["auroc"] or 0.0
    r_new, r_floor = new["recall"] or 0.0, min(reference["recall"] or 0.0, target)
    if a_new <= a_ref + 1e-9:
        why = f"CV AUROC {a_new:.3f} is not above {a_ref:.3f} of {ref_id}"
    elif r_new < r_floor - 1e-9:
        why = f"CV recall {r_new:.3f} is below {r_floor:.3f}"
    else:
        return reference, True, (
            f"CV AUROC {a_new:.3f} > {a_ref:.3f} of {ref_id}, recall {r_new:.3f}: now active"
        )  # fmt: skip
    return reference, False, f"{why}; {active} stays active"


def rescore(store: Store, head: Head, model_id: str) -> dict[str, float]:
    """Score every image with cached features by ``head``, no decoding; cache under ``model_id``.

    An image's score is its highest frame's. Features are read in bounded chunks; the
    predictions are written in one short transaction at the end.
    """
    out: dict[str, float] = {}
    frames: dict[str, int] = {}
    for feats in iter_cached_features(store):
        with one_blas_thread():
            p = image_max(head.predict(feats.frames), feats.owner, len(feats.shas))
        out.update(zip(feats.shas, p.tolist(), strict=True))
        frames.update(zip(feats.shas, feats.counts.tolist(), strict=True))
    now = time.time()
    with store.write():
        store.conn.executemany(
            "INSERT OR REPLACE INTO predictions (sha256, model_id, probability, n_frames, "
            "created_at) VALUES (?,?,?,?,?)",
            [(s, model_id, p, frames[s], now) for s, p in out.items()],
        )
    return out


def count_flips(
    before: dict[str, float], before_t: float, after: dict[str, float], after_t: float
) -> dict[str, int]:
    """Calls that changed between two models, over the images both scored."""
    both = [s for s in after if s in before]
    b = np.array([before[s] for s in both]) >= before_t
    a = np.array([after[s] for s in both]) >= after_t
    return {"to_nsfw": int((a & ~b).sum()), "to_sfw": int((~a & b).sum()), "compared": len(both)}


def adapt(
    store: Store,
    models_dir: str | os.PathLike,
    settings: Settings | None = None,
    *,
    only: set[str] | None = None,
    activate: bool | None = None,
) -> Adaptation:
    """Fit a head on the labelled images' cached features, save, rescore, register.

    ``only`` limits the labels used to these hashes. ``activate``: None makes the new model
    active when it beats the active one (see :func:`_compare`), True always, False never.
    Raises :class:`NotEnoughLabels` below ``settings.min_labels_per_class`` per class.
    """
    settings = settings or Settings()
    labels = {s: e for s, e in store.current_labels().items() if only is None or s in only}
    feats = cached_features(store, list(labels))
    y = np.array([labels[s].label == "nsfw" for s in feats.shas], dtype=np.int64)
    have = {"nsfw": int(y.sum()), "sfw": int(len(y) - y.sum())}
    skipped = len(labels) - len(feats.shas)
    _check_enough(have, skipped, settings)

    fit = fit_head(feats.frames, feats.owner, y, settings)
    threshold = choose_threshold(y, fit.cv_probs, settings.target_recall)
    cv = figures(y, fit.cv_probs, threshold)
    builtin_row = store.model(BUILTIN_ID)
    builtin = figures(
        y, fit.builtin_probs, builtin_row.threshold if builtin_row else BUILTIN_THRESHOLD
    )
    previous = store.active_model()
    reference, beats, decision = _compare(
        store, previous, feats.shas, y, fit, threshold, builtin, settings.target_recall
    )
    if activate is not None and activate != beats:
        decision = f"{'' if activate else 'not '}activated on request; {decision}"

    labelled = "".join(f"{s}:{v}\n" for s, v in zip(feats.shas, y.tolist(), strict=True))
    meta = {
        **fit.head.meta,
        "threshold": threshold, "target_recall": settings.target_recall,
        "metrics": {f"cv_{k}": cv[k] for k in ("auroc", "recall", "fpr", "precision")},
        "cv": cv, "builtin": builtin, "reference": reference, "decision": decision,
        "labels": have, "label_digest": hashlib.sha256(labelled.encode()).hexdigest(),
        "folds": int(fit.folds.max() + 1), "c_grid": list(settings.c_grid),
        "cv_log_loss": {str(c): v for c, v in fit.cv_loss.items()},
        "base_model": {"id": BUILTIN_ID, "sha256": BUILTIN_SHA256, "features": BUILTIN_FEATURES,
                       "dim": DIM, "cache_dtype": "float16"},
        "preprocessing": OPEN_NSFW.to_dict(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    head = Head(fit.head.kind, fit.head.layers, meta)
    model_id = f"{KIND}-{head.digest[:10]}"  # the same weights, the same id
    head.meta["model_id"] = model_id
    path = head.save(Path(models_dir) / f"{model_id}.npz")

    started = time.perf_counter()
    predictions = rescore(store, head, model_id)
    rescore_s = time.perf_counter() - started
    flips = {"to_nsfw": 0, "to_sfw": 0, "compared": 0}
    if previous is not None:
        before = store.predictions(previous.id, list(predictions))
        flips = count_flips(before, previous.threshold, predictions, threshold)
    with store.write():
        store.add_model(
            model_id, KIND, threshold=threshold, path=os.fspath(path.resolve()),
            metrics=meta["metrics"], preprocessing=OPEN_NSFW.to_dict(), meta=_row_meta(head),
            activate=beats if activate is None else activate,
        )  # fmt: skip
        store.set_threshold(model_id, threshold)  # add_model keeps an old row's threshold
        now_active = store.active_model()
    return Adaptation(
        model_id=model_id, path=path, kind=fit.head.kind, c=fit.c, threshold=threshold,
        labels=have, skipped=skipped, cv=cv, builtin=builtin, reference=reference,
        activated=now_active is not None and now_active.id == model_id, decision=decision,
        previous_id=previous.id if previous else None, rescored=len(predictions), flips=flips,
        predictions=predictions, fit_s=fit.seconds, rescore_s=rescore_s,
    )  # fmt: skip


def labelled_without_features(store: Store, only: set[str] | None = None) -> list[str]:
    """Paths of labelled images on disk whose built-in features are not cached (to scan)."""
    rows = [r for r in store.labelled_files() if only is None or r["sha256"] in only]
    have = set(cached_features(store, [r["sha256"] for r in rows]).shas) if rows else set()
    return [r["path"] for r in rows
            if r["sha256"] not in have and r["path"] and os.path.isfile(r["path"])]  # fmt: skip
