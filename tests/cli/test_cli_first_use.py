"""What a new user meets first, as exact lines and exit codes: missing extras, empty folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from typer.testing import CliRunner

from nsfw_tui.cli import app

runner = CliRunner()


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def without(monkeypatch, module: str) -> None:
    """The light install: ``module`` cannot be found (nothing else changes)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )


def test_train_without_the_extra_refuses_before_any_progress_bar(tmp_path, monkeypatch):
    without(monkeypatch, "torch")
    result = run("train", home=tmp_path / "home")
    assert result.exit_code == 2
    # one line and nothing else: no empty "epochs" and "batches" bars before it
    assert result.output == (
        "error: this command needs the train extra (torch is not installed): "
        "pip install 'nsfw-tui[train]'\n"
    )
