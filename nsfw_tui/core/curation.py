"""What to look at next: near-duplicate groups, the `useful` order and likely wrong labels."""

# The review session (core.review) asks three things of the store that a scan alone does not
# give: which images are near copies of each other (core.dupes), how unlike each unlabelled
# image is to what is already labelled (cosine of the built-in features), what the other
# registered models say, and the out-of-fold scores of the newest adapted head (a score of
# each labelled image by a head fitted without it). `load_curation` gathers them off the UI
# thread; the order and the suspect list are computed from them on each refresh, cheaply.

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .adapt_features import cached_features
from .adapt_head import KIND, load_head
from .dupes import BLOCK, Groups, near_duplicates, unit_vectors
from .store import Store

# The unlabelled images `useful` spreads out: no two members of one group next to each other.
SPREAD_TOP = 20
UNKNOWN_NOVELTY = 0.5  # an image without cached features: neither like nor unlike the labelled


@dataclass
class Curation:
    groups: Groups | None = None
    vectors: np.ndarray | None = None  # (n, 1024) float16 unit vectors, rows as ``index``
    index: dict[str, int] = field(default_factory=dict)  # image hash -> row of ``vectors``
    others: dict[str, float] = field(default_factory=dict)  # share of other models saying NSFW
    oof: dict[str, float] = field(default_factory=dict)  # the adapted head's out-of-fold P
    oof_model: str | None = None
    novelty: dict[str, float] = field(default_factory=dict)  # 1 - max cosine to the labelled
    labelled: frozenset[str] = frozenset()  # the labelled images ``novelty`` was taken against

    def group_of(self, sha: str | None) -> int | None:
        return self.groups.of(sha) if self.groups is not None else None

    def update_novelty(self, labelled: set[str]) -> None:
        """Novelty of every image against ``labelled``: added labels update it in place."""
        if self.vectors is None or not len(self.vectors):
            self.labelled = frozenset(labelled)
            return
        added = labelled - self.labelled
        if self.labelled - labelled or not self.novelty:  # a label went: start again
            best = _max_cosine(self.vectors, self._rows(labelled))
        else:
            current = np.array([1.0 - self.novelty[s] for s in self.index], dtype=np.float32)
            best = np.maximum(current, _max_cosine(self.vectors, self._rows(added)))
        self.novelty = {s: float(1.0 - best[i]) for s, i in self.index.items()}
        self.labelled = frozenset(labelled)

    def _rows(self, shas: set[str]) -> np.ndarray:
        return np.array(sorted(self.index[s] for s in shas if s in self.index), dtype=np.int64)


def _max_cosine(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each vector's highest cosine with ``vectors[rows]`` (-1 where ``rows`` is empty)."""
    best = np.full(len(vectors), -1.0, dtype=np.float32)
    for start in range(0, len(rows), BLOCK):
        chosen = vectors[rows[start : start + BLOCK]].astype(np.float32)
        for a in range(0, len(vectors), BLOCK):
            sims = vectors[a : a + BLOCK].astype(np.float32) @ chosen.T
            best[a : a + BLOCK] = np.maximum(best[a : a + BLOCK], sims.max(axis=1))
    return best


def load_curation(
    store: Store,
    paths: Mapping[str, str],
    model_id: str,
    threshold: float,
    max_distance: int,
    should_stop: Callable[[], bool] | None = None,
) -> Curation:
    """Groups, features, other models' calls and out-of-fold scores for these images.

    ``paths``: image hash -> a file holding it (images without cached features are decoded
    for a perceptual hash). ``model_id``: the active model, whose own calls are not "another
    model's".
    """
    shas = sorted(paths)
    feats = cached_features(store, shas)  # read once: the groups and the novelty use them
    groups = near_duplicates(
        store, shas, threshold, max_distance, paths, should_stop, features=feats
    )
    calls: dict[str, list[bool]] = {}
    newest_head = None
    for model in store.models():
        if model.kind == KIND and (newest_head is None or _newer(model, newest_head, model_id)):
            newest_head = model
        if model.id == model_id:
            continue
        for sha, p in store.predictions(model.id, shas).items():
            calls.setdefault(sha, []).append(p >= model.threshold)
    others = {sha: sum(c) / len(c) for sha, c in calls.items()}
    oof: dict[str, float] = {}
    if newest_head is not None and newest_head.path:
        try:
            raw = load_head(newest_head.path).meta.get("oof") or {}
            oof = {str(s): float(p) for s, p in raw.items()}
        except (OSError, ValueError, KeyError):
            oof = {}  # a head file gone or unreadable: no suspects rather than a crash
    curation = Curation(
        groups=groups,
        vectors=unit_vectors(feats),
        index={s: i for i, s in enumerate(feats.shas)},
        others=others,
        oof=oof,
        oof_model=newest_head.id if newest_head is not None and oof else None,
    )
    labelled = {s for s, event in store.current_labels(shas).items() if event.label}
    curation.update_novelty(labelled)
    return curation


def _newer(model, best, active_id: str) -> bool:
    """The active adapted head wins; else the newest one."""
    if best.id == active_id:
        return False
    return model.id == active_id or model.created_at > best.created_at


# -- the `useful` order -----------------------------------------------------------------


def closeness(p, threshold: float):
    """1 at the threshold, falling with the distance in log-odds (0.2 and 0.5 alike).

    ``p`` a number or an array of them.
    """
    eps = 1e-6
    p = np.clip(p, eps, 1 - eps)
    t = min(max(threshold, eps), 1 - eps)
    return 1.0 / (1.0 + np.abs(np.log(p / (1 - p)) - math.log(t / (1 - t))))


def usefulness(
    p: Sequence[float], threshold: float, shas: Sequence[str | None], curation: Curation | None
) -> np.ndarray:
    """How much a label on each of these unlabelled images should teach, each part worth up
    to 1: near the threshold, other models call it the other way, unlike the labelled."""
    p = np.asarray(p, dtype=np.float64)
    score = closeness(p, threshold)
    if curation is None:
        return score + UNKNOWN_NOVELTY
    others = np.array([curation.others.get(s, np.nan) if s else np.nan for s in shas])
    mine = (p >= threshold).astype(np.float64)
    score += np.where(np.isnan(others), 0.0, np.abs(others - mine))
    novelty = curation.novelty
    return score + np.array(
        [novelty.get(s, UNKNOWN_NOVELTY) if s else UNKNOWN_NOVELTY for s in shas]
    )


def spread(ranked: Sequence, group_of: Callable[[object], object], top: int = SPREAD_TOP) -> list:
    """``ranked`` with its first ``top`` holding no two neighbours of one group.

    Each pick is the best remaining item whose group differs from the one just placed; when
    every remaining item shares that group, it goes as it is.
    """
    rest = list(ranked)
    out: list = []
    while rest and len(out) < top:
        last = group_of(out[-1]) if out else None
        pick = next((i for i, item in enumerate(rest) if last is None or group_of(item) != last), 0)
        out.append(rest.pop(pick))
    return out + rest


# -- likely wrong labels ----------------------------------------------------------------


def suspects(labels: Mapping[str, str], oof: Mapping[str, float]) -> dict[str, float]:
    """Labelled images whose out-of-fold score contradicts their label, with how strongly.

    Confident learning for two classes: a class's bar is the mean out-of-fold confidence of
    the images labelled with it; an image labelled SFW whose P(NSFW) reaches the NSFW bar (or
    the other way round) is suspect, and its strength is its confidence in the other class.
    """
    p_nsfw = [oof[s] for s, lab in labels.items() if lab == "nsfw" and s in oof]
    p_sfw = [1 - oof[s] for s, lab in labels.items() if lab == "sfw" and s in oof]
    if not p_nsfw or not p_sfw:
        return {}
    bar_nsfw, bar_sfw = sum(p_nsfw) / len(p_nsfw), sum(p_sfw) / len(p_sfw)
    out: dict[str, float] = {}
    for sha, label in labels.items():
        p = oof.get(sha)
        if p is None:
            continue
        if label == "sfw" and p >= bar_nsfw and p > 0.5:
            out[sha] = p
        elif label == "nsfw" and 1 - p >= bar_sfw and p < 0.5:
            out[sha] = 1 - p
    return out
