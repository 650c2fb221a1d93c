"""Adaptation's folds keep near copies together, so out-of-fold scores stay out of fold."""

from __future__ import annotations

import numpy as np

from nsfw_tui.core import adapt as A
from nsfw_tui.core.adapt_fit import assign_folds
from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin
from nsfw_tui.core.store import ScoreRecord


def test_groups_of_one_give_the_folds_without_groups():
    y = np.random.default_rng(0).integers(0, 2, 50)
    assert (assign_folds(y, 5, 3, groups=np.arange(50)) == assign_folds(y, 5, 3)).all()


def test_a_group_shares_one_fold_under_its_majority_label():
    y = np.array([1, 1, 0] * 10 + [0] * 20)
    groups = np.concatenate([np.repeat(np.arange(10), 3), np.arange(10, 30)])
    folds = assign_folds(y, 5, 0, groups)
    for g in range(10):
        assert len(set(folds[groups == g].tolist())) == 1
    # ten NSFW-majority groups over five folds: two each
    first = folds[np.arange(0, 30, 3)]
    assert np.bincount(first, minlength=5).tolist() == [2] * 5


def test_adapt_holds_near_copies_out_together(store, home):
    """Twins (one image and a near copy) in a real store: each pair shares a fold."""
    rng = np.random.default_rng(1)
    ensure_builtin(store)
    records, labels = [], {"nsfw": [], "sfw": []}
    for i in range(24):
        label = "nsfw" if i < 12 else "sfw"
        base = np.maximum(rng.normal(size=1024) + (1.5 if label == "nsfw" else 0), 0)
        for twin in (0, 1):
            vector = base + twin * 0.01 * rng.random(1024)
            sha = f"{i:032x}{twin:032x}"
            records.append(
                ScoreRecord(f"/x/{i}-{twin}.jpg", 1, 1, sha, 0.5, BUILTIN_ID, features=vector[None])
            )
            labels[label].append(sha)
    store.record_files(records)
    for label, shas in labels.items():
        store.set_labels(shas, label)
    home.mkdir(parents=True, exist_ok=True)
    result = A.adapt(store, home, A.Settings(c_grid=(1.0,)), activate=False)
    head = A.load_head(result.path)
    assert head.meta["near_duplicate_groups"] == 24
    feats = A.cached_features(store)
    y = np.array([s in labels["nsfw"] for s in feats.shas], dtype=np.int64)
    groups = np.array([int(s[:32], 16) for s in feats.shas])
    fit = A.fit_head(feats.frames, feats.owner, y, A.Settings(c_grid=(1.0,)), groups)
    for g in range(24):
        assert len(set(fit.folds[groups == g].tolist())) == 1
