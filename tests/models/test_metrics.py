"""Metrics on hand-made scores, and `eval` / `calibrate` over fixed cached scores."""

from __future__ import annotations

import pytest
from support.scores import S, Y
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.metrics import auroc, confusion, threshold_for_recall
from nsfw_tui.core.store import Store


def test_confusion_counts_at_the_threshold():
    c = confusion(Y, S, 0.3)
    assert (c.tp, c.fn, c.fp, c.tn) == (3, 1, 2, 4)
    assert c.recall == pytest.approx(0.75)
    assert c.precision == pytest.approx(0.6)
    assert c.accuracy == pytest.approx(0.7)
    assert c.fpr == pytest.approx(2 / 6)
    assert confusion(Y, S, 0.9).tp == 1  # at or above the threshold is NSFW


def test_auroc_counts_pairs_and_ties_half():
    # pairs (pos, neg) ranked right: 0.9 beats all 6, 0.8 all 6, 0.35 beats 5, 0.1 beats 2
    assert auroc(Y, S) == pytest.approx((6 + 6 + 5 + 2) / 24)
    assert auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert auroc([1, 1, 0], [0.9, 0.4, 0.4]) == pytest.approx(0.75)
    assert auroc([1, 1], [0.2, 0.3]) is None


def test_threshold_is_the_highest_that_reaches_the_recall():
    assert threshold_for_recall(Y, S, 0.75) == pytest.approx(0.35)
    assert threshold_for_recall(Y, S, 0.76) == pytest.approx(0.1)
    assert threshold_for_recall(Y, S, 1.0) == pytest.approx(0.1)
    assert threshold_for_recall(Y, S, 0.5) == pytest.approx(0.8)
    assert threshold_for_recall([0, 0], [0.1, 0.2], 0.9) is None
    t = threshold_for_recall(Y, S, 0.95)
    assert confusion(Y, S, t).recall >= 0.95


def test_eval_on_cached_scores(scored_home):
    result = CliRunner().invoke(app, ["eval", "--home", str(scored_home)])
    assert result.exit_code == 0, result.output
    assert "open_nsfw at threshold 0.2 on 10 labelled images" in result.output
    # at 0.2: TP 3 (0.9 0.8 0.35), FN 1, FP 3 (0.7 0.3 0.2), TN 3
    assert "recall 0.7500  precision 0.5000  accuracy 0.6000" in result.output
    assert f"AUROC {19 / 24:.4f}" in result.output


def test_calibrate_sets_the_threshold(scored_home):
    runner = CliRunner()
    result = runner.invoke(
        app, ["calibrate", "--target-recall", "0.75", "--home", str(scored_home)]
    )
    assert result.exit_code == 0, result.output
    assert "threshold 0.2 -> 0.35" in result.output
    with Store.open(scored_home / "store.db") as store:
        assert store.model("open_nsfw").threshold == pytest.approx(0.35)
    bad = runner.invoke(app, ["calibrate", "--target-recall", "1.5", "--home", str(scored_home)])
    assert bad.exit_code == 2 and "target-recall" in bad.output


def test_eval_without_labels_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--home", str(tmp_path / "h")])
    assert result.exit_code == 2
    assert "no labelled images" in result.output
