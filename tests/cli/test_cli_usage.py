"""What a person types first: the version, -h, and commands they mistype."""

from __future__ import annotations

import pytest
from support.cli import commands
from typer.testing import CliRunner

import nsfw_tui
from nsfw_tui.cli import app

runner = CliRunner()


def test_version_is_printed_and_listed_in_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"nsfw-tui {nsfw_tui.__version__}\n"
    assert "--version" in runner.invoke(app, ["--help"]).output


def test_the_wheel_and_the_package_give_one_version():
    import importlib.metadata

    assert importlib.metadata.version("nsfw-tui") == nsfw_tui.__version__


@pytest.mark.parametrize("cmd", [[], *commands(app)], ids=lambda c: " ".join(c) or "root")
def test_dash_h_is_help_on_every_command(cmd):
    short, long = runner.invoke(app, [*cmd, "-h"]), runner.invoke(app, [*cmd, "--help"])
    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output and "-h, --help" in short.output


def test_a_mistyped_command_gets_the_close_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["scna", "photos"], ["scna"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2
        assert "Error: No such command 'scna'. Did you mean 'scan'?" in result.output
    result = runner.invoke(app, ["models", "usee"])
    assert result.exit_code == 2 and "Did you mean 'use'?" in result.output


def test_a_word_close_to_nothing_lists_every_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["zzzz"])
    assert result.exit_code == 2
    listed = result.output.split("Commands: ", 1)[1].strip().rstrip(".").split(", ")
    assert listed[:3] == ["open", "demo", "scan"] and "serve" in listed
    result = runner.invoke(app, ["models", "zzzz"])
    assert "Error: No such command 'zzzz'. Commands: use, threshold, add." in result.output


def test_only_an_existing_path_or_one_with_a_separator_opens_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["./phtos", "--home", str(tmp_path / "home")])
    assert result.exit_code == 2 and "error: folder not found: phtos" in result.output
    (tmp_path / "notes.txt").write_text("not a folder")
    result = runner.invoke(app, ["notes.txt", "--home", str(tmp_path / "home")])
    assert result.exit_code == 2 and "error: not a folder: notes.txt" in result.output
