"""A trained model whose threshold flags most validation SFW images is registered, not activated."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.trainer import FAST, write_family
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.store import Store

runner = CliRunner()


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


@pytest.mark.slow
def test_a_threshold_that_flags_everything_is_not_activated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder lands here
    home = tmp_path / "home"
    # NSFW and SFW drawn from one family: no model can tell them apart, so the threshold
    # that reaches the target recall flags the SFW images too.
    write_family(tmp_path / "data" / "nsfw", "blobs", 8, seed=0)
    write_family(tmp_path / "data" / "sfw", "blobs", 8, seed=1)
    assert run("import", str(tmp_path / "data"), home=home).exit_code == 0
    args = ["train", "--config-name", "baseline", *FAST, "training.max_epochs=1", "--activate"]
    result = run(*args, home=home)
    assert result.exit_code == 0, result.output
    with Store.open(home / "store.db") as store:
        (model,) = [m for m in store.models() if m.kind == "checkpoint"]
        assert store.active_model().id == "open_nsfw"
    fpr = model.metrics["val_fpr_at_threshold"]
    threshold = f"{model.threshold:.4g}"
    assert fpr > 0.2
    assert (
        f"warning: at threshold {threshold} the model flags {fpr:.0%} of the validation SFW "
        f"images (false alarm rate {fpr:.4g} > metrics.max_val_fpr 0.2); registered, not made "
        "active"
    ) in result.output
    assert (
        f"model {model.id} registered with threshold {threshold} "
        f"(make it active anyway: nsfw-tui models use {model.id})"
    ) in result.output
    assert "active model: open_nsfw (unchanged)" in result.output
    # one line per epoch, starting with it (not repeated among the metrics)
    (epoch_line,) = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert epoch_line.startswith("epoch 1/1  train_loss ")
    assert " val_auroc " in epoch_line and "epoch 1.0000" not in epoch_line
    # the same threshold everywhere: the run's summary line too, never 0.0000
    assert f"threshold {threshold}," in result.output
