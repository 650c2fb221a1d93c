"""A model's threshold by hand: `models threshold ID F`, `--reset`, and what `calibrate` says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.scorers import ensure_builtin
from nsfw_tui.core.store import REGISTERED_THRESHOLD, Store
from nsfw_tui.core.thresholds import format_threshold, registered_threshold, too_many_false_alarms

runner = CliRunner()
RUN = "20250101-000000-abcdef"
TRAINED = f"baseline-{RUN}"


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def threshold_of(home: Path, model_id: str) -> float:
    with Store.open(home / "store.db") as store:
        row = store.model(model_id)
        assert row is not None
        return row.threshold


def add_trained(home: Path, threshold: float = 0.031) -> None:
    """A finished run and its model, as trainer.run registers them."""
    with Store.open(home / "store.db") as store:
        ensure_builtin(store)  # the active one, as in any home a command has opened
        store.insert_run(RUN, {}, {}, [])
        store.close_run(RUN, "done", [], {"threshold": threshold}, model_id=TRAINED)
        store.add_model(
            TRAINED, "checkpoint", threshold=threshold, path="/m/ckpt", meta={"run_id": RUN}
        )


def test_format_threshold_is_one_value_everywhere():
    assert format_threshold(0.2) == "0.2"
    assert format_threshold(3.626e-05) == "3.626e-05"  # never `0.0000`
    assert format_threshold(0.0019234) == "0.001923"
    assert format_threshold(None) == "–"


def test_threshold_set_and_reset_on_the_builtin_model(home):
    set_ = run("models", "threshold", "open_nsfw", "0.35", home=home)
    assert set_.exit_code == 0, set_.output
    assert set_.output == (
        "open_nsfw: threshold 0.2 -> 0.35\n"
        "active model: open_nsfw -> open_nsfw (threshold 0.2 -> 0.35)\n"
    )
    assert threshold_of(home, "open_nsfw") == pytest.approx(0.35)
    reset = run("models", "threshold", "open_nsfw", "--reset", home=home)
    assert reset.exit_code == 0, reset.output
    assert reset.output.splitlines()[0] == (
        "open_nsfw: threshold 0.35 -> 0.2 (the threshold it came with)"
    )
    assert threshold_of(home, "open_nsfw") == pytest.approx(0.2)


def test_threshold_set_and_reset_on_a_runs_model(home):
    add_trained(home)
    set_ = run("models", "threshold", TRAINED, "0.5", home=home)
    assert set_.exit_code == 0, set_.output
    # not the active model: no active-model line
    assert set_.output == f"{TRAINED}: threshold 0.031 -> 0.5\n"
    reset = run("models", "threshold", TRAINED, "--reset", home=home)
    assert reset.output == f"{TRAINED}: threshold 0.5 -> 0.031 (the threshold it came with)\n"
    assert threshold_of(home, TRAINED) == pytest.approx(0.031)


def test_a_row_from_before_knows_its_threshold_from_its_run_or_the_builtin(home):
    add_trained(home)
    with Store.open(home / "store.db") as store:
        for model_id, expected in ((TRAINED, 0.031), ("open_nsfw", 0.2)):
            row = store.model(model_id)
            assert row is not None
            old = {k: v for k, v in row.meta.items() if k != REGISTERED_THRESHOLD}
            assert registered_threshold(store, replace(row, meta=old)) == pytest.approx(expected)
        row = store.model(TRAINED)
        assert registered_threshold(store, replace(row, meta={})) is None


def test_an_adapted_row_from_before_knows_its_threshold_from_its_file(home, tmp_path):
    import numpy as np

    from nsfw_tui.core.adapt_head import DIM, Head

    path = Head("logreg", ((np.zeros((DIM, 1)), np.zeros(1)),), {"threshold": 0.42}).save(
        tmp_path / "head.npz"
    )
    with Store.open(home / "store.db") as store:
        store.add_model("adapted-x", "adapted", threshold=0.42, path=str(path))
        row = replace(store.model("adapted-x"), meta={}, threshold=0.9)
        assert registered_threshold(store, row) == pytest.approx(0.42)
        path.unlink()
        assert registered_threshold(store, row) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("open_nsfw",), "error: give a threshold within [0, 1], or --reset: e.g. open_nsfw 0.3"),
        (("open_nsfw", "0.3", "--reset"), "error: give a threshold or --reset, not both"),
        (("open_nsfw", "1.5"), "error: the threshold must be within [0, 1], got 1.5"),
        (("nope", "0.3"), "error: no model with id 'nope' (known: open_nsfw)"),
    ],
)
def test_threshold_refusals_are_one_line(home, args, message):
    run("models", home=home)
    result = run("models", "threshold", *args, home=home)
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert threshold_of(home, "open_nsfw") == pytest.approx(0.2)


def test_calibrate_prints_old_new_and_how_to_go_back(scored_home):
    first = run("calibrate", "--target-recall", "0.75", home=scored_home)
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert "open_nsfw: threshold 0.2 -> 0.35 (target recall 0.75)" in lines
    assert lines[-2] == "active model: open_nsfw -> open_nsfw (threshold 0.2 -> 0.35)"
    # the threshold before is the model's own: one way back
    assert (
        lines[-1] == "back to its own threshold (0.2): nsfw-tui models threshold open_nsfw --reset"
    )
    second = run("calibrate", "--target-recall", "1.0", home=scored_home)
    assert second.output.splitlines()[-2:] == [
        "back to its own threshold (0.2): nsfw-tui models threshold open_nsfw --reset",
        "back to the one before (0.35): nsfw-tui models threshold open_nsfw 0.35",
    ]
    reset = run("models", "threshold", "open_nsfw", "--reset", home=scored_home)
    assert reset.exit_code == 0
    assert threshold_of(scored_home, "open_nsfw") == pytest.approx(0.2)


def test_too_many_false_alarms_names_the_rate_only_past_the_limit():
    assert too_many_false_alarms({"val_fpr_at_threshold": 0.5}, 0.2) == 0.5
    assert too_many_false_alarms({"val_fpr_at_threshold": 0.2}, 0.2) is None
    assert too_many_false_alarms({"val_fpr_at_threshold": None}, 0.2) is None
    assert too_many_false_alarms({}, 0.2) is None
