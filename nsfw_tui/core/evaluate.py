"""A model's scores on the labelled images: the data behind `eval`, `calibrate` and stats."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .adapt_head import KIND, load_head
from .errors import NsfwTuiError
from .metrics import Confusion, auroc, confusion, threshold_for_recall
from .scan import ScanOptions, scan_files
from .scorers import Scorer
from .store import ModelRow, Store


@dataclass
class Labelled:
    y: list[int]  # 1 NSFW, 0 SFW
    scores: list[float]
    shas: list[str]
    skipped: int  # labelled images neither cached nor on disk any more, or unreadable
    known: int = 0  # of them, scores given as they are (an adapted head's out-of-fold ones)


@dataclass
class Evaluation:
    model_id: str
    threshold: float
    confusion: Confusion
    auroc: float | None
    n: int
    skipped: int


def _under(path: str | None, folder: Path | None) -> bool:
    if folder is None:
        return True
    if path is None:
        return False
    try:
        return Path(os.path.abspath(path)).is_relative_to(folder)
    except ValueError:
        return False


def labelled_scores(
    store: Store,
    scorer: Scorer,
    *,
    folder: str | os.PathLike | None = None,
    only: set[str] | None = None,
    known: dict[str, float] | None = None,
    options: ScanOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Labelled:
    """Scores of ``scorer`` on every labelled image (cached, else scored now).

    ``known`` scores are used as they are, in place of the scorer's: an adapted head's
    out-of-fold scores of the images it was fitted on.
    """
    known = known or {}
    root = Path(os.path.abspath(folder)) if folder is not None else None
    rows = [
        r
        for r in store.labelled_files()
        if _under(r.path, root) and (only is None or r.sha256 in only)
    ]
    cached = store.predictions(scorer.id, [r.sha256 for r in rows])
    for sha in store.unchecked(list(cached)):  # read again first (P12): whole, or an error
        del cached[sha]
    cached.update({r.sha256: known[r.sha256] for r in rows if r.sha256 in known})
    todo = [r.path for r in rows if r.sha256 not in cached and r.path]
    todo = [p for p in todo if os.path.isfile(p)]
    if todo:
        result = scan_files(todo, scorer, store, options, on_progress=on_progress)
        for item in result.items:
            if item.sha256 and item.probability is not None:
                cached[item.sha256] = item.probability
    out = Labelled([], [], [], 0)
    for r in rows:
        if r.sha256 in cached:
            out.y.append(1 if r.label == "nsfw" else 0)
            out.scores.append(cached[r.sha256])
            out.shas.append(r.sha256)
            out.known += r.sha256 in known
        else:
            out.skipped += 1
    return out


def evaluate(data: Labelled, model_id: str, threshold: float) -> Evaluation:
    if not data.y:
        raise NsfwTuiError(
            "no labelled images to evaluate on: label some in the review screen or with "
            "`nsfw-tui import`"
        )
    return Evaluation(
        model_id,
        threshold,
        confusion(data.y, data.scores, threshold),
        auroc(data.y, data.scores),
        len(data.y),
        data.skipped,
    )


def calibrated_threshold(data: Labelled, target_recall: float) -> float:
    """The highest threshold that reaches ``target_recall`` on the labelled NSFW images."""
    if not 0.0 < target_recall <= 1.0:
        raise NsfwTuiError(f"--target-recall must be within (0, 1], got {target_recall}")
    t = threshold_for_recall(data.y, data.scores, target_recall)
    if t is None:
        raise NsfwTuiError("no NSFW-labelled images: recall cannot be measured, so no threshold")
    return t


def summary(data: Labelled, threshold: float) -> dict[str, float | None]:
    """Recall-first figures at ``threshold``, for side-by-side comparisons."""
    c = confusion(data.y, data.scores, threshold)
    return {
        "recall": c.recall,
        "precision": c.precision,
        "accuracy": c.accuracy,
        "fpr": c.fpr,
        "auroc": auroc(data.y, data.scores),
        "threshold": threshold,
        "n": float(len(data.y)),
    }


# -- which images a model is measured on --------------------------------------------------------

SPLITS = ("val", "all")


@dataclass
class Scope:
    """The labelled images a model is measured on, and the words that say which."""

    split: str  # "val": only images it was not fitted on; "all": every labelled image
    source: str  # "run" | "oof" | "builtin" | "all" | "unknown"
    only: set[str] | None = None  # these images alone; None: every labelled image
    known: dict[str, float] = field(default_factory=dict)  # out-of-fold scores, as they are
    run_id: str | None = None


def _out_of_fold(row: ModelRow) -> dict[str, float]:
    """An adapted head's out-of-fold scores by image hash, as its file records them."""
    if not row.path:
        return {}
    oof = load_head(row.path).meta.get("oof") or {}
    return {str(sha): float(p) for sha, p in oof.items()}


def eval_scope(store: Store, row: ModelRow, split: str | None = None) -> Scope:
    """Which labelled images ``row`` is measured on; ``split`` None picks "val" where known.

    A trained model: its run's validation images. An adapted head: its out-of-fold scores
    on the images it was fitted on, its own scores on images labelled since. The built-in
    model: every labelled image (its training data is not ours to know).
    """
    if split is not None and split not in SPLITS:
        raise NsfwTuiError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if row.kind == "builtin":
        return Scope(split or "all", "builtin")
    run_id = row.meta.get("run_id")
    if split == "all":
        return Scope("all", "all", run_id=run_id)
    run = store.run(run_id) if run_id else None
    oof = _out_of_fold(row) if row.kind == KIND else {}
    if run is not None and run.val_hashes:
        return Scope("val", "run", only=set(run.val_hashes), run_id=run.id)
    if oof:
        return Scope("val", "oof", known=oof)
    if split == "val":
        raise NsfwTuiError(f"{fitted_on_unknown(row)}; use --split all")
    return Scope("all", "unknown")


def scope_line(scope: Scope, data: Labelled) -> str:
    """One line saying which images the figures come from, and whether training ones count."""
    n = len(data.y)
    if scope.source == "run":
        return (
            f"measured on {n} validation images of run {scope.run_id}, none of them trained on "
            "(--split all adds its training images)"
        )
    if scope.source == "oof":
        since = n - data.known
        return (
            f"measured on out-of-fold scores: {data.known} images each scored by a head fitted "
            f"without it, {since} labelled since it was fitted (--split all scores every "
            "image with the final head, its training images included)"
        )
    if scope.source == "builtin":
        return (
            f"measured on all {n} labelled images: the built-in model's own training data is "
            "unknown, so any labelled image counts, even one like those it learnt from"
        )
    if scope.source == "unknown":
        return (
            f"measured on all {n} labelled images: this model records no validation images, "
            "so its training images are included if any were labelled here"
        )
    return f"measured on all {n} labelled images, training images included: figures flatter it"


def fitted_on_unknown(row: ModelRow) -> str:
    return f"{row.id} records no validation images, so the images it was fitted on are unknown"


def comparable_images(
    store: Store, row: ModelRow, shas: Sequence[str]
) -> tuple[set[str] | None, str]:
    """Of ``shas`` (a new run's validation images), those ``row`` was not fitted on either.

    A trained model: the ones among its own run's validation images (what else it trained
    on is not recorded). An adapted head: the ones labelled since it was fitted. The
    built-in model: all of them. None, and why, when that leaves no NSFW or no SFW image.
    """
    wanted = set(shas)
    if row.kind == "builtin":
        unseen = wanted
    else:
        run_id = row.meta.get("run_id")
        run = store.run(run_id) if run_id else None
        try:
            oof = _out_of_fold(row) if row.kind == KIND else {}
        except NsfwTuiError as exc:  # a head file gone or damaged: nothing known it saw
            return None, str(exc)
        if run is not None and run.val_hashes:
            unseen = wanted & set(run.val_hashes)
        elif oof:
            unseen = wanted - set(oof)
        else:
            return None, fitted_on_unknown(row)
    labels = [ev.label for ev in store.current_labels(list(unseen)).values()] if unseen else []
    if "nsfw" not in labels or "sfw" not in labels:
        return None, (
            f"{len(unseen)} of the {len(wanted)} validation images are new to {row.id} too, "
            "not NSFW and SFW both"
        )
    return unseen, ""
