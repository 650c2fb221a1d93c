"""Adaptation: a small head fitted on the built-in network's cached features, in seconds, offline.

The head sees the 1024 pooled features of open_nsfw (as the store caches them, float16) and
the network's own NSFW logit. It is logistic regression or a one-hidden-layer MLP, class
balanced, its L2 strength chosen by cross-validation over the labelled images; its threshold
comes from the out-of-fold scores. Saved as one .npz (weights + JSON metadata, no pickle),
registered as a model of kind ``adapted``, and applied to every image whose features are
cached without decoding a file.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# The head, the feature cache and the fitting live in their own modules (to keep each
# readable); their public names are re-exported, so callers import from here alone.
from .adapt_features import (
    Features,
    cached_features,
    feature_sources,
    image_max,
    iter_cached_features,
)
from .adapt_fit import Fit, assign_folds, fit_head
from .adapt_head import (
    DIM,
    FORMAT,
    FORMAT_VERSION,
    KIND,
    KINDS,
    Head,
    Settings,
    builtin_logit_weights,
    load_head,
    one_blas_thread,
)
from .decision import count_flips
from .dupes import group_vectors, unit_vectors
from .errors import NsfwTuiError
from .metrics import auroc, confusion, threshold_for_recall
from .preprocess import OPEN_NSFW
from .scorers import BUILTIN_FEATURES, BUILTIN_ID, BUILTIN_SHA256, BUILTIN_THRESHOLD
from .store import ModelRow, Store


class NotEnoughLabels(NsfwTuiError):
    """Too few labelled images with cached features; ``needed`` says how many more per class."""

    def __init__(self, message: str, needed: dict[str, int], have: dict[str, int], skipped: int):
        super().__init__(message)
        self.needed, self.have, self.skipped = needed, have, skipped


def register_head(store: Store, path: str | os.PathLike, *, activate: bool = False) -> ModelRow:
    """Register an adapted-model file (from this or another home) as a model of the store."""
    head = load_head(path)
    model_id = head.meta.get("model_id") or f"adapted-{head.digest[:10]}"
    with store.write():
        store.add_model(
            model_id,
            KIND,
            threshold=float(head.meta["threshold"]),
            path=os.fspath(Path(path).resolve()),
            metrics=head.meta.get("metrics") or {},
            preprocessing=OPEN_NSFW.to_dict(),
            meta=_row_meta(head),
            activate=activate,
        )
        store.set_threshold(model_id, float(head.meta["threshold"]))
    row = store.model(model_id)
    assert row is not None
    return row


def _row_meta(head: Head) -> dict[str, Any]:
    keep = (
        "head",
        "c",
        "hidden",
        "labels",
        "base_model",
        "cv",
        "builtin",
        "reference",
        "decision",
        "target_recall",
    )
    return {k: head.meta[k] for k in keep if k in head.meta}


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
    return {
        "recall": c.recall,
        "fpr": c.fpr,
        "precision": c.precision,
        "auroc": auroc(y, p),
        "threshold": float(threshold),
        "n": float(len(y)),
    }


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
        needed=need,
        have=have,
        skipped=skipped,
    )


def _compare(
    store: Store,
    previous: ModelRow | None,
    shas: list[str],
    y: np.ndarray,
    fit: Fit,
    threshold: float,
    builtin: dict[str, Any],
    target: float,
) -> tuple[dict[str, Any], bool, str]:
    """Does the head beat the active model on the labelled images? (reference, beats, why).

    Beats: a higher out-of-fold AUROC, and recall at its threshold no lower than the
    reference's at its own (or than the target recall, where the reference's is higher).
    Equal AUROCs (both 1.0, say, where each ranks every image right) are broken by recall
    at the threshold, then by the false alarm rate there: ranking alike, the model whose
    threshold catches more NSFW is the better one.
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
    r_new, r_ref = new["recall"] or 0.0, reference["recall"] or 0.0
    f_new, f_ref = new["fpr"] or 0.0, reference["fpr"] or 0.0
    r_floor = min(r_ref, target)
    tied = abs(a_new - a_ref) <= 1e-9
    at = f"at the thresholds {threshold:.4g} and {ref_t:.4g}"
    if a_new < a_ref - 1e-9:
        why = f"CV AUROC {a_new:.3f} is not above {a_ref:.3f} of {ref_id}"
    elif r_new < r_floor - 1e-9:
        why = f"CV recall {r_new:.3f} is below {r_floor:.3f}"
    elif not tied:
        won = f"CV AUROC {a_new:.3f} > {a_ref:.3f} of {ref_id}, recall {r_new:.3f}"
        return reference, True, f"{won}: now active"
    elif r_new > r_ref + 1e-9:
        won = f"CV AUROC {a_new:.3f} ties with {ref_id}; recall {r_new:.3f} > {r_ref:.3f} {at}"
        return reference, True, f"{won}: now active"
    elif r_new >= r_ref - 1e-9 and f_new < f_ref - 1e-9:
        won = (
            f"CV AUROC {a_new:.3f} and recall {r_new:.3f} tie with {ref_id}; false alarm rate "
            f"{f_new:.3f} < {f_ref:.3f} {at}"
        )
        return reference, True, f"{won}: now active"
    else:
        why = (
            f"CV AUROC {a_new:.3f} ties with {ref_id}, and recall {r_new:.3f} / false alarm "
            f"rate {f_new:.3f} do not beat {r_ref:.3f} / {f_ref:.3f} {at}"
        )
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
    store.put_predictions(model_id, {s: (p, frames[s]) for s, p in out.items()})
    return out


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

    # near copies (cosine of these same features) share a fold: out-of-fold stays honest
    groups = group_vectors(feats.shas, unit_vectors(feats), settings.dupes_threshold).group
    fit = fit_head(feats.frames, feats.owner, y, settings, groups)
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
        "threshold": threshold,
        "target_recall": settings.target_recall,
        "metrics": {f"cv_{k}": cv[k] for k in ("auroc", "recall", "fpr", "precision")},
        "cv": cv,
        "builtin": builtin,
        "reference": reference,
        "decision": decision,
        "labels": have,
        "label_digest": hashlib.sha256(labelled.encode()).hexdigest(),
        # each labelled image's score by the fold's head fitted without it: what `eval`
        # measures the head on, so its own training labels never flatter it
        "oof": {s: float(p) for s, p in zip(feats.shas, fit.cv_probs.tolist(), strict=True)},
        "folds": int(fit.folds.max() + 1),
        "near_duplicate_groups": int((np.bincount(groups) > 1).sum()) if len(groups) else 0,
        "c_grid": list(settings.c_grid),
        "cv_log_loss": {str(c): v for c, v in fit.cv_loss.items()},
        "base_model": {
            "id": BUILTIN_ID,
            "sha256": BUILTIN_SHA256,
            "features": BUILTIN_FEATURES,
            "dim": DIM,
            "cache_dtype": "float16",
        },
        "preprocessing": OPEN_NSFW.to_dict(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
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
            model_id,
            KIND,
            threshold=threshold,
            path=os.fspath(path.resolve()),
            metrics=meta["metrics"],
            preprocessing=OPEN_NSFW.to_dict(),
            meta=_row_meta(head),
            activate=beats if activate is None else activate,
        )
        store.set_threshold(model_id, threshold)  # add_model keeps an old row's threshold
        now_active = store.active_model()
    return Adaptation(
        model_id=model_id,
        path=path,
        kind=fit.head.kind,
        c=fit.c,
        threshold=threshold,
        labels=have,
        skipped=skipped,
        cv=cv,
        builtin=builtin,
        reference=reference,
        activated=now_active is not None and now_active.id == model_id,
        decision=decision,
        previous_id=previous.id if previous else None,
        rescored=len(predictions),
        flips=flips,
        predictions=predictions,
        fit_s=fit.seconds,
        rescore_s=rescore_s,
    )


def labelled_without_features(store: Store, only: set[str] | None = None) -> list[str]:
    """Paths of labelled images on disk whose built-in features are not cached, or were
    cached from a read by an older completeness check (to scan)."""
    rows = [r for r in store.labelled_files() if only is None or r.sha256 in only]
    have = set(cached_features(store, [r.sha256 for r in rows]).shas) if rows else set()
    have -= store.unchecked(list(have))  # read again first: an incomplete one's features go
    return [r.path for r in rows if r.sha256 not in have and r.path and os.path.isfile(r.path)]


__all__ = [
    "DIM",
    "FORMAT",
    "FORMAT_VERSION",
    "KIND",
    "KINDS",
    "Adaptation",
    "Features",
    "Fit",
    "Head",
    "NotEnoughLabels",
    "Settings",
    "adapt",
    "assign_folds",
    "builtin_logit_weights",
    "cached_features",
    "choose_threshold",
    "count_flips",
    "feature_sources",
    "figures",
    "fit_head",
    "image_max",
    "iter_cached_features",
    "labelled_without_features",
    "load_head",
    "one_blas_thread",
    "register_head",
    "rescore",
]
