"""A model's scores on the labelled images: the data behind `eval`, `calibrate` and stats."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import NsfwTuiError
from .metrics import Confusion, auroc, confusion, threshold_for_recall
from .scan import ScanOptions, scan_files
from .scorers import Scorer
from .store import Store


@dataclass
class Labelled:
    y: list[int]  # 1 NSFW, 0 SFW
    scores: list[float]
    shas: list[str]
    skipped: int  # labelled images neither cached nor on disk any more, or unreadable


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
    options: ScanOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Labelled:
    """Scores of ``scorer`` on every labelled image (cached, else scored now)."""
    root = Path(os.path.abspath(folder)) if folder is not None else None
    rows = [
        r
        for r in store.labelled_files()
        if _under(r.path, root) and (only is None or r.sha256 in only)
    ]
    cached = store.predictions(scorer.id, [r.sha256 for r in rows])
    for sha in store.unchecked(list(cached)):  # read again first (P12): whole, or an error
        del cached[sha]
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
