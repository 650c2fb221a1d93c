"""Shared helpers for the export tests: a trained baseline in a home folder, and copies of it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.store import Store
from support.trainer import config, home_for, labelled_store
from trainer.run import RunResult, train

runner = CliRunner()
# 48 px and 50 images a class: a baseline that separates the two families in about 5 s on
# two cores, small enough that a dynamo export and an int8 calibration take seconds.
TRAIN = ("data.input_size=[48,48]", "training.max_epochs=8")


def trained_home(tmp: Path) -> tuple[Path, RunResult]:
    """tmp/home with a labelled store and one trained, active baseline checkpoint."""
    store_path = labelled_store(tmp, 50, 50)
    result = train(store_path, home_for(store_path), config(*TRAIN), activate=True)
    assert result.status == "done", result.message
    return store_path.parent, result


def copy_home(home: Path, dest: Path) -> Path:
    """A second home whose store is a backup of ``home``'s (checkpoints stay where they are)."""
    dest.mkdir(parents=True)
    with Store.open(home / "store.db") as store:
        store.backup(dest / "store.db")
    return dest


def cli(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]
