"""Binary classification metrics with NSFW as the positive class; recall comes first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .decision import is_nsfw


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def accuracy(self) -> float | None:
        return (self.tp + self.tn) / self.n if self.n else None

    @property
    def fpr(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


def confusion(y_true: Sequence[int], scores: Sequence[float], threshold: float) -> Confusion:
    """Counts at ``threshold``: a score at or above it is called NSFW (1)."""
    y = np.asarray(y_true, dtype=bool)
    pred = is_nsfw(scores, threshold)
    return Confusion(
        tp=int(np.sum(pred & y)),
        fp=int(np.sum(pred & ~y)),
        tn=int(np.sum(~pred & ~y)),
        fn=int(np.sum(~pred & y)),
    )


def auroc(y_true: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (ties count half); None unless both classes are present."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney U with average ranks, so tied scores count as half a win.
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def threshold_for_recall(
    y_true: Sequence[int], scores: Sequence[float], target_recall: float
) -> float | None:
    """The highest threshold whose recall on NSFW reaches ``target_recall``.

    Highest, because among the thresholds that catch enough NSFW it raises the fewest
    false alarms. None when there is no NSFW example to measure recall on.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    pos = np.sort(s[y])[::-1]
    if len(pos) == 0:
        return None
    # Recall at threshold t is the share of positives with score >= t; the k-th highest
    # positive score is the highest threshold that keeps k of them.
    k = int(np.ceil(target_recall * len(pos) - 1e-12))
    k = min(max(k, 1), len(pos))
    return float(pos[k - 1])
