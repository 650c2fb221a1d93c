"""`models` and `runs` listings: ids whole at any width, plain lines when piped, newest run last."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.cli import options as cli_options
from nsfw_tui.core.scorers import ensure_builtin
from nsfw_tui.core.store import Store

runner = CliRunner()
LONG = "adapted-03048f7c91d2e4b5a6f7081928374655"
OLD, NEW = "20250101-000000-aaaaaa", "20250102-000000-bbbbbb"


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def add_models_and_runs(home: Path) -> None:
    with Store.open(home / "store.db") as store:
        ensure_builtin(store)
        store.add_model(LONG, "adapted", threshold=3.626e-05, path="/m/head.npz")
        for run_id in (OLD, NEW):  # inserted oldest first
            store.insert_run(run_id, {}, {}, [])
            summary = {"threshold": 3.626e-05, "metrics": {"val_auroc": 0.9}}
            store.close_run(run_id, "done", [], summary, model_id=f"baseline-{run_id}")


def test_piped_models_are_plain_lines_with_whole_ids(home):
    add_models_and_runs(home)
    result = run("models", home=home)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "active\tid\tkind\tthreshold\tmetrics\tpath",
        "*\topen_nsfw\tbuiltin\t0.2\t\t(bundled)",
        f"\t{LONG}\tadapted\t3.626e-05\t\t/m/head.npz",
    ]


def test_piped_runs_list_the_newest_last_with_whole_ids(home):
    add_models_and_runs(home)
    result = run("runs", home=home)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "run\tstatus\tmodel\tepochs\tauroc\taccuracy\trecall\tthreshold",
        f"{OLD}\tdone\tbaseline\t0\t0.900\t–\t–\t3.626e-05",
        f"{NEW}\tdone\tbaseline\t0\t0.900\t–\t–\t3.626e-05",
    ]


def test_a_narrow_terminal_never_cuts_an_id(home, monkeypatch):
    add_models_and_runs(home)
    out = io.StringIO()
    narrow = Console(file=out, force_terminal=True, width=50, highlight=False, soft_wrap=True)
    monkeypatch.setattr(cli_options, "console", narrow)
    assert run("models", home=home).exit_code == 0
    assert run("runs", home=home).exit_code == 0
    text = out.getvalue()
    assert LONG in text and OLD in text and NEW in text and "…" not in text
    assert "Training runs (newest last)" in text
    assert text.index(OLD) < text.index(NEW)
