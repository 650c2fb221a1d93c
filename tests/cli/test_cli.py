"""The `nsfw-tui` commands end to end, with the real built-in model and a real store."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from support.cli import commands
from support.imagegen import photo, photo_folder, save, truncated_jpeg, zero_tailed
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.store import Store

runner = CliRunner()


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("cmd", commands(app), ids=" ".join)
def test_every_command_has_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.splitlines()) > 3


# One line per module of nsfw_tui/cli, in the order root.py joins them: review, score, label,
# models and training, then shipping a model; never an accident of import order.
HELP_ORDER = [
    *("open", "demo"),
    *("scan",),
    *("import-scores",),
    *("dupes",),
    *("watch", "release"),
    *("import", "labels", "backup", "restore"),
    *("models",),
    *("train", "runs", "plots"),
    *("eval", "calibrate"),
    *("export",),
    *("serve",),
]


def test_help_lists_every_command_in_its_order():
    assert [cmd[0] for cmd in commands(app) if len(cmd) == 1] == HELP_ORDER
    models = [cmd[1] for cmd in commands(app) if cmd[0] == "models" and len(cmd) == 2]
    assert models == ["use", "threshold", "add"]


def test_python_dash_m_is_the_same_command():
    """`python -m nsfw_tui.cli` runs the package's __main__, with every command registered."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "nsfw_tui.cli", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("\nCommands:\n", 1)[1]  # plain help: Rich's costs 60 ms a start
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    assert listed == HELP_ORDER


def test_scan_writes_csv_then_reuses_the_cache(tmp_path, home):
    photo_folder(tmp_path / "photos", 4)
    truncated_jpeg(tmp_path / "photos" / "broken.jpg")
    out = tmp_path / "preds.csv"
    first = run("scan", str(tmp_path / "photos"), "-o", str(out), home=home)
    assert first.exit_code == 0, first.output
    assert "0 reused from the cache, 4 scored" in first.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0])
    assert columns == [
        "image_path",
        "probability",
        "prediction",
        "class_name",
        "error",
        "label",
        "frame_time",
    ]
    by_name = {Path(r["image_path"]).name: r for r in rows}
    broken = by_name.pop("broken.jpg")
    assert broken["probability"] == "" and broken["prediction"] == "" and broken["class_name"] == ""
    assert broken["error"].startswith(("truncated", "corrupt"))
    for r in by_name.values():
        assert 0.0 <= float(r["probability"]) <= 1.0
        assert r["class_name"] == ("NSFW" if float(r["probability"]) >= 0.2 else "SFW")

    second = run("scan", str(tmp_path / "photos"), "-o", str(out), home=home)
    assert second.exit_code == 0
    assert "5 reused from the cache, 0 scored" in second.output


def test_p12_scan_csv_has_errors_for_zero_tailed_files(tmp_path, home):
    photo_folder(tmp_path / "photos", 2)
    zero_tailed(tmp_path / "photos" / "partial.jpg", 0.8)
    zero_tailed(tmp_path / "photos" / "partial.png", 0.3)
    out = tmp_path / "preds.csv"
    result = run("scan", str(tmp_path / "photos"), "-o", str(out), home=home)
    assert result.exit_code == 0, result.output
    assert "2 scored" in result.output
    with open(out, newline="") as fh:
        rows = {Path(r["image_path"]).name: r for r in csv.DictReader(fh)}
    for name in ("partial.jpg", "partial.png"):
        assert rows[name]["probability"] == "" and rows[name]["class_name"] == ""
        assert rows[name]["error"].startswith("truncated: ") and "zeros" in rows[name]["error"]


def test_scan_json_and_label_column(tmp_path, home):
    [a, b] = photo_folder(tmp_path / "p", 2)
    with Store.open(home / "store.db") as store:
        import hashlib

        store.set_labels([hashlib.sha256(a.read_bytes()).hexdigest()], "nsfw")
    out = tmp_path / "preds.json"
    result = run("scan", str(tmp_path / "p"), "-o", str(out), "--threshold", "1.0", home=home)
    assert result.exit_code == 0, result.output
    rows = {Path(r["image_path"]).name: r for r in json.loads(out.read_text())}
    assert rows[a.name]["label"] == "nsfw" and rows[a.name]["class_name"] == "NSFW"
    assert rows[b.name]["label"] == "" and rows[b.name]["class_name"] == "SFW"


def test_scan_without_output_prints_a_table(tmp_path, home):
    photo_folder(tmp_path / "p", 2)
    result = run("scan", str(tmp_path / "p"), home=home)
    assert result.exit_code == 0
    assert "Scan results" in result.output and "img_000.jpg" in result.output


def test_missing_folder_is_one_line_exit_2(tmp_path, home):
    result = run("scan", str(tmp_path / "nowhere"), home=home)
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: folder not found: {tmp_path / 'nowhere'}"]


def test_empty_folder(tmp_path, home):
    (tmp_path / "empty").mkdir()
    result = run("scan", str(tmp_path / "empty"), home=home)
    assert result.exit_code == 0
    assert f"no images found in {tmp_path / 'empty'}" in result.stderr and not result.stdout


@pytest.mark.parametrize(
    ("override", "needle"),
    [("threshold=abc", "scan.threshold"), ("treshold=0.5", "did you mean"), ("workers", "=")],
)
def test_bad_override_is_one_clear_line(tmp_path, home, override, needle):
    (tmp_path / "p").mkdir()
    result = run("scan", str(tmp_path / "p"), override, home=home)
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert needle in line


def test_overrides_reach_the_scan(tmp_path, home):
    photo_folder(tmp_path / "p", 1)
    result = run("scan", str(tmp_path / "p"), "threshold=0.0", "scan.workers=0", home=home)
    assert result.exit_code == 0
    assert "threshold 0:" in result.output and "1 NSFW" in result.output


def test_store_that_is_not_sqlite_is_refused_and_untouched(tmp_path, home):
    home.mkdir()
    bogus = home / "store.db"
    bogus.write_text("not a database\n")
    (tmp_path / "p").mkdir()
    result = run("scan", str(tmp_path / "p"), home=home)
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "not an SQLite file" in line and "nsfw-tui restore" in line
    assert bogus.read_text() == "not a database\n"


def test_import_label_folders_and_export(tmp_path, home):
    photo_folder(tmp_path / "data" / "nsfw", 3)
    save(photo((64, 48), seed=50), tmp_path / "data" / "sfw" / "calm.jpg")
    result = run("import", str(tmp_path / "data"), home=home)
    assert result.exit_code == 0, result.output
    assert "labelled 3 NSFW and 1 SFW" in result.output

    out = tmp_path / "labels.csv"
    assert run("labels", "-o", str(out), home=home).exit_code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["label"] for r in rows) == ["nsfw", "nsfw", "nsfw", "sfw"]
    assert all(r["source"] == "import" and len(r["sha256"]) == 64 for r in rows)

    dest = tmp_path / "curated"
    result = run("labels", "--imagefolder", str(dest), home=home)
    assert result.exit_code == 0, result.output
    assert len(list((dest / "nsfw").iterdir())) == 3
    assert [p.name for p in (dest / "sfw").iterdir()] == ["calm.jpg"]
    assert os.path.samefile(dest / "sfw" / "calm.jpg", tmp_path / "data" / "sfw" / "calm.jpg")


def test_import_single_label_keeps_a_persons_label(tmp_path, home):
    [a, _] = photo_folder(tmp_path / "p", 2)
    import hashlib

    with Store.open(home / "store.db") as store:
        store.set_labels([hashlib.sha256(a.read_bytes()).hexdigest()], "sfw", source="human")
    result = run("import", str(tmp_path / "p"), "--label", "nsfw", home=home)
    assert result.exit_code == 0
    assert "labelled 1 NSFW" in result.output and "1 kept a person's" in result.output
    bad = run("import", str(tmp_path / "p"), "--label", "maybe", home=home)
    assert bad.exit_code == 2 and error_lines(bad)


def test_import_without_layout_says_what_to_do(tmp_path, home):
    photo_folder(tmp_path / "flat", 1)
    result = run("import", str(tmp_path / "flat"), home=home)
    assert result.exit_code == 2
    assert "--label" in error_lines(result)[0]


def test_models_list_and_use(tmp_path, home):
    result = run("models", home=home)
    assert result.exit_code == 0 and "open_nsfw" in result.output and "*" in result.output
    bad = run("models", "use", "nope", home=home)
    assert bad.exit_code == 2 and "no model with id 'nope'" in error_lines(bad)[0]
    assert run("models", "use", "open_nsfw", home=home).exit_code == 0


def test_backup_and_restore(tmp_path, home):
    photo_folder(tmp_path / "data" / "sfw", 2)
    run("import", str(tmp_path / "data"), home=home)
    backup = tmp_path / "backup.db"
    assert run("backup", str(backup), home=home).exit_code == 0
    again = run("backup", str(backup), home=home)
    assert again.exit_code == 2 and "already exists" in error_lines(again)[0]

    (home / "store.db").write_bytes(b"garbage" * 100)
    broken = run("models", home=home)
    assert broken.exit_code == 2 and "restore" in error_lines(broken)[0]
    restored = run("restore", str(backup), home=home)
    assert restored.exit_code == 0, restored.output
    result = run("labels", home=home)
    assert "0 NSFW and 2 SFW" in result.output

    junk = tmp_path / "junk.db"
    junk.write_text("nope")
    bad = run("restore", str(junk), home=home)
    assert bad.exit_code == 2 and "not an nsfw-tui backup" in error_lines(bad)[0]


def test_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NSFW_TUI_HOME", str(tmp_path / "envhome"))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert (tmp_path / "envhome" / "store.db").exists()


def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    result = run("train", home=tmp_path / "home")
    assert result.exit_code == 2
    assert error_lines(result) == [
        "error: this command needs the train extra (torch is not installed): "
        "pip install 'nsfw-tui[train]'"
    ]


def test_missing_output_folder_is_refused_before_scoring(tmp_path, home):
    photo_folder(tmp_path / "p", 1)
    result = run("scan", str(tmp_path / "p"), "-o", str(tmp_path / "nodir" / "x.csv"), home=home)
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: the output folder {tmp_path / 'nodir'} does not exist"]
    with Store.open(home / "store.db") as store:
        assert store.counts()["predictions"] == 0  # nothing was scored


def test_imagefolder_onto_a_file_is_one_line(tmp_path, home):
    photo_folder(tmp_path / "data" / "sfw", 1)
    run("import", str(tmp_path / "data"), home=home)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = run("labels", "--imagefolder", str(blocker), home=home)
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "cannot write the image folder" in line and blocker.read_text() == "x"
