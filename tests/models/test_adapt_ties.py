"""Adaptation's decision when the head and the built-in model rank the labels equally well."""

from __future__ import annotations

import numpy as np

from nsfw_tui.core import adapt as A
from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION

PER_CLASS = 12


def features_with_logits(logits: np.ndarray, seed: int = 0) -> np.ndarray:
    """One feature vector per logit whose built-in NSFW logit is that value.

    Each lies along the built-in layer's weights, plus a little noise across them.
    """
    w, b = A.builtin_logit_weights()
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1e-3, (len(logits), A.DIM))
    noise -= np.outer(noise @ w / (w @ w), w)  # leaves the logit as it is
    return np.outer(logits - b, w / (w @ w)) + noise + 0.5


def test_equal_aurocs_are_broken_by_recall_at_the_threshold(tmp_path):
    # Every NSFW image has a higher built-in score than every SFW one (AUROC 1.0), but all
    # of them lie below its threshold (0.2): recall 0. A head ranks them as well and sets a
    # threshold that catches them all.
    rng = np.random.default_rng(1)
    logits = np.concatenate([rng.uniform(-3.0, -2.5, PER_CLASS), rng.uniform(-6, -5, PER_CLASS)])
    feats = features_with_logits(logits)
    shas = [f"{i:064x}" for i in range(len(logits))]
    with Store.open(tmp_path / "store.db") as store:
        ensure_builtin(store)
        store.record_files(
            [
                ScoreRecord(
                    f"/gone/{i}.png",
                    1,
                    1,
                    sha,
                    probability=float(1 / (1 + np.exp(-logit))),
                    model_id=BUILTIN_ID,
                    features=feats[i : i + 1],
                    checked=CHECK_VERSION,
                )
                for i, (sha, logit) in enumerate(zip(shas, logits, strict=True))
            ]
        )
        store.set_labels(shas[:PER_CLASS], "nsfw")
        store.set_labels(shas[PER_CLASS:], "sfw")
        result = A.adapt(store, tmp_path / "models", A.Settings(kind="logreg"))
        active = store.active_model().id

    assert result.builtin["auroc"] == 1.0 and result.builtin["recall"] == 0.0
    assert result.cv["auroc"] == 1.0 and result.cv["recall"] == 1.0 and result.cv["fpr"] == 0.0
    assert result.activated and active == result.model_id
    assert result.decision == (
        f"CV AUROC 1.000 ties with {BUILTIN_ID}; recall 1.000 > 0.000 at the thresholds "
        f"{result.threshold:.4g} and 0.2: now active"
    )


def test_a_tie_on_auroc_and_recall_goes_to_fewer_false_alarms():
    y = np.array([1, 1, 0, 0, 0, 0])
    head = np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.1])
    builtin = np.array([0.9, 0.8, 0.6, 0.5, 0.1, 0.1])
    fit = A.Fit(None, 1.0, head, builtin, np.zeros(6, int), {}, 0.0)
    info = {"threshold": 0.4}
    _, beats, why = A._compare(None, None, [], y, fit, 0.5, info, 0.95)
    assert beats and why == (
        f"CV AUROC 1.000 and recall 1.000 tie with {BUILTIN_ID}; false alarm rate 0.000 < "
        "0.500 at the thresholds 0.5 and 0.4: now active"
    )
    _, beats, why = A._compare(None, None, [], y, fit, 0.15, info, 0.95)
    assert not beats and why == (
        f"CV AUROC 1.000 ties with {BUILTIN_ID}, and recall 1.000 / false alarm rate 0.500 do "
        f"not beat 1.000 / 0.500 at the thresholds 0.15 and 0.4; {BUILTIN_ID} stays active"
    )
