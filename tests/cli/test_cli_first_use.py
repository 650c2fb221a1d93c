"""What a new user meets first, as exact lines and exit codes: missing extras, empty folders."""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import pytest
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


def test_a_read_only_home_is_called_read_only(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # as a home without write permission answers (not root)
        if self.parent == home:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = run("models", home=home)
    assert result.exit_code == 2
    assert result.output == (
        f"error: the home folder {home} is read-only (Permission denied); "
        "choose a writable one with --home or $NSFW_TUI_HOME\n"
    )


@pytest.mark.slow  # a real watcher waits for files to settle
def test_watch_summary_counts_cached_and_labelled_decisions_as_such(tmp_path, capsys):
    import hashlib

    from support.watch import Harness, image_bytes

    from nsfw_tui.cli.watch import _print_summary
    from nsfw_tui.core.store import Store

    h = Harness(tmp_path)
    labelled = image_bytes(1, red=250)
    with Store.open(h.store_path) as store:
        store.set_labels([hashlib.sha256(labelled).hexdigest()], "sfw")
    try:
        h.start()
        (h.inbox / "a.png").write_bytes(image_bytes(2, red=250))
        h.wait_lines(1)
        (h.inbox / "copy_of_a.png").write_bytes(image_bytes(2, red=250))  # its score is cached
        (h.inbox / "labelled.png").write_bytes(labelled)
        h.wait_lines(3)
        stats = h.watcher.stats()
    finally:
        h.stop()
    capsys.readouterr()
    _print_summary(stats, dry_run=False)
    assert capsys.readouterr().err == (
        "3 decisions: 2 NSFW, 1 SFW, 0 errors; quarantined 0; 1 made by labels, 1 on cached "
        "scores; 2 images scored by the model; 0 left for the next start's catch-up\n"
    )


def test_scan_of_a_folder_without_images_says_so_without_a_table(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    result = run("scan", str(empty), home=tmp_path / "home")
    assert result.exit_code == 0
    assert result.stdout == ""
    # (off a terminal the finished progress bar leaves an empty line behind)
    assert result.stderr.strip("\n") == f"no images found in {empty}"


@pytest.mark.slow  # imports torch
def test_export_refuses_the_built_in_model_before_saying_it_exports(tmp_path):
    result = run("export", "--onnx", home=tmp_path / "home")
    assert result.exit_code == 2
    assert result.output == (
        "error: model 'open_nsfw' is of kind builtin (the built-in network ships as ONNX "
        "already); only checkpoint models (trained with `nsfw-tui train`) can be exported: pass "
        "--model ID of one of them (see `nsfw-tui models`) or --checkpoint PATH\n"
    )


def test_one_labelled_image_is_singular(tmp_path):
    from support.imagegen import photo_folder

    photo_folder(tmp_path / "data" / "nsfw", 1)
    home = tmp_path / "home"
    assert run("import", str(tmp_path / "data"), home=home).exit_code == 0
    result = run("labels", home=home)
    assert result.exit_code == 0
    assert result.output == "1 NSFW and 0 SFW labelled image\n"


@pytest.mark.parametrize(
    ("cmd", "usage"),
    [
        (["scan"], "Usage: nsfw-tui scan [OPTIONS] PATH [OVERRIDES]..."),
        (["watch"], "Usage: nsfw-tui watch [OPTIONS] PATH [OVERRIDES]..."),
        (["open"], "Usage: nsfw-tui open [OPTIONS] PATH"),
        (["import"], "Usage: nsfw-tui import [OPTIONS] PATH"),
        (["backup"], "Usage: nsfw-tui backup [OPTIONS] FILE"),
        (["models", "add"], "Usage: nsfw-tui models add [OPTIONS] FILE"),
        (["models", "use"], "Usage: nsfw-tui models use [OPTIONS] MODEL_ID"),
    ],
)
def test_usage_lines_name_arguments_plainly(cmd, usage):
    result = runner.invoke(app, [*cmd, "-h"], prog_name="nsfw-tui")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == usage


@pytest.mark.parametrize(
    ("cmd", "example"),
    [
        ("scan", "e.g. batch_size=32 scan.workers=1."),
        ("train", "e.g. training.max_epochs=3 training.batch_size=16."),
        ("export", "e.g. opset=17 dynamic_batch=false."),
        ("serve", "e.g. port=8080 max_images=16."),
        ("watch", "e.g. settle_s=0.5 rescan_interval_s=60."),
    ],
)
def test_each_command_gives_its_own_override_example(cmd, example):
    result = runner.invoke(app, [cmd, "-h"], terminal_width=200)
    assert result.exit_code == 0
    assert f"Config overrides as key=value, {example}" in result.output
