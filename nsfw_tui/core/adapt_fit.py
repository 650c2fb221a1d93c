"""Fitting the adapted head: cross-validated logistic regression or a small MLP, in seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .adapt_features import image_max
from .adapt_head import DIM, Head, Settings, _sigmoid, builtin_logit_weights, one_blas_thread
from .errors import NsfwTuiError

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


def assign_folds(
    y: np.ndarray, k: int, seed: int = 0, groups: np.ndarray | None = None
) -> np.ndarray:
    """Stratified folds over images (an image, all its frames and paths, is one unit).

    With ``groups`` (a group index per image: near copies), a group is the unit: all its
    images share a fold, counted under its majority label (NSFW on a tie). Groups of one
    give exactly the folds without groups.
    """
    rng = np.random.default_rng(seed)
    unit, unit_label = _units(y, groups)
    folds = np.empty(len(unit_label), dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(unit_label == cls)
        folds[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % k
    return folds[unit]


def _units(y: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(the unit of each image, the label of each unit): images alone, or their groups."""
    y = np.asarray(y, dtype=np.int64)
    if groups is None:
        return np.arange(len(y)), y
    _, unit = np.unique(np.asarray(groups), return_inverse=True)
    size = np.bincount(unit)
    nsfw = np.bincount(unit, weights=y, minlength=len(size))
    return unit, (2 * nsfw >= size).astype(np.int64)


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
    a: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    c: np.ndarray,
    pen: np.ndarray,
    start: np.ndarray | None = None,
) -> np.ndarray:
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
        np.repeat(w1[None], n_prob, 0).astype(f32),
        np.zeros((n_prob, hidden), f32),
        np.repeat(w2[None], n_prob, 0).astype(f32),
        np.zeros(n_prob, f32),
    ]
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
    frames: np.ndarray,
    owner: np.ndarray,
    y: np.ndarray,
    settings: Settings | None = None,
    groups: np.ndarray | None = None,
) -> Fit:
    """Fit the head on cached features; C by k-fold cross-validation over images.

    ``frames`` (m, 1024) float16 features, ``owner`` (m,) the image of each frame (frames of
    an image contiguous), ``y`` (n,) 1 NSFW / 0 SFW per image. No image is scored by a
    head whose training saw its label: held-out images weigh zero in their fold's fit.
    Standardisation and principal directions use every labelled image's features, which
    involves no label.
    """
    with one_blas_thread():
        return _fit_head(frames, owner, y, settings or Settings(), groups)


def _fit_head(
    frames: np.ndarray,
    owner: np.ndarray,
    y: np.ndarray,
    settings: Settings,
    groups: np.ndarray | None = None,
) -> Fit:
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
    if groups is not None:
        _, unit_label = _units(y.astype(np.int64), groups)
        k = min(settings.folds, int(unit_label.sum()), int(len(unit_label) - unit_label.sum()))
        if k < 2:  # too few groups of a class to hold any out: image by image, as without
            groups = None
    if groups is None:
        k = min(settings.folds, n_pos, n_neg)
    folds = assign_folds(y.astype(np.int64), k, settings.seed, groups)
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
    cv_weights = np.stack(
        [_balanced_weights(y, owner, used, folds != f) for f in range(k) for _ in grid]
    )
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
