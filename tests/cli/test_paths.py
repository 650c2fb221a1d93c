"""Stored paths are absolute: every command gives the same answers from any directory (S16)."""

from __future__ import annotations

import sqlite3

import pytest
from support.imagegen import photo, save
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.store import ScoreRecord, Store

runner = CliRunner()
TINY_TRAINING = (
    "data.input_size=[32,32]",
    "training.batch_size=4",
    "training.max_epochs=1",
    "data.num_workers=0",
)


def run(*args: str, home):
    result = runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def dataset(root, n: int = 6) -> None:
    for i in range(n):
        save(photo((96, 72), i), root / "data" / "nsfw" / f"n{i}.jpg", quality=90)
        save(photo((96, 72), 100 + i), root / "data" / "sfw" / f"s{i}.jpg", quality=90)


@pytest.mark.slow
def test_import_here_then_export_eval_and_adapt_from_elsewhere_agree(tmp_path, monkeypatch):
    home = tmp_path / "home"
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    dataset(here)
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    run("import", "data", home=home)  # a relative argument
    run("scan", "data", "-o", str(tmp_path / "scan.csv"), home=home)
    with Store.open(home / "store.db") as store:
        stored = [r[0] for r in store._conn.execute("SELECT path FROM files")]
    assert len(stored) == 12 and all(p.startswith(str(here / "data")) for p in stored)
    assert str(here / "data" / "nsfw" / "n0.jpg") in (tmp_path / "scan.csv").read_text()
    answers = {}
    for cwd in (here, elsewhere):
        monkeypatch.chdir(cwd)
        exported = run("labels", "--imagefolder", str(tmp_path / f"out-{cwd.name}"), home=home)
        evaluated = run("eval", home=home)
        answers[cwd.name] = (exported.replace(f"out-{cwd.name}", "out"), evaluated)
    assert answers["here"] == answers["elsewhere"]
    assert "6 NSFW and 6 SFW" in answers["here"][0]
    assert "0 labelled images no longer on disk" in answers["here"][0]
    monkeypatch.chdir(elsewhere)
    adapted = run("train", "--config-name", "adapt", home=home)
    assert "6 NSFW + 6 SFW" in adapted and "rescored 12 cached images" in adapted
    trained = run("train", "--config-name", "baseline", *TINY_TRAINING, home=home)
    assert "train 5 NSFW + 5 SFW, val 1 NSFW + 1 SFW (0 labelled images skipped)" in trained


def test_relative_rows_from_early_versions_are_merged_never_guessed(tmp_path, monkeypatch):
    home = tmp_path / "home"
    here = tmp_path / "here"
    dataset(here, n=1)
    path = home / "store.db"
    with Store.open(path) as store:
        store.set_labels(["x"], None)  # create the store
    conn = sqlite3.connect(path, isolation_level=None)
    from nsfw_tui.core.images import hash_file

    sha, _ = hash_file(here / "data" / "nsfw" / "n0.jpg")
    conn.execute(  # what `import data` run in `here` stored before paths were absolute
        "INSERT INTO files (path, sha256, size, mtime_ns, seen_at) VALUES (?, ?, 1, 1, 1.0)",
        ("data/nsfw/n0.jpg", sha),
    )
    conn.execute(
        "INSERT INTO label_events (sha256, label, source, created_at) "
        "VALUES (?, 'nsfw', 'import', 1.0)",
        (sha,),
    )
    conn.close()
    monkeypatch.chdir(tmp_path)  # not where the relative row was written
    with Store.open(path) as store:
        [row] = store.labelled_files()
        assert row.path is None  # unknown location, not tmp_path/data/nsfw/n0.jpg
    out = run("labels", "--imagefolder", str(tmp_path / "out"), home=home)
    assert "1 labelled image no longer on disk" in out
    run("scan", str(here / "data"), "-o", str(tmp_path / "s.csv"), home=home)
    with Store.open(path) as store:
        paths = [r[0] for r in store._conn.execute("SELECT path FROM files ORDER BY path")]
        [row] = store.labelled_files()
    assert "data/nsfw/n0.jpg" not in paths
    assert row.path == str(here / "data" / "nsfw" / "n0.jpg")


def test_the_twin_of_a_relative_row_replaces_it_even_when_the_content_changed(tmp_path):
    with Store.open(tmp_path / "store.db") as store:
        store.record_files([ScoreRecord("photos/a.jpg", 1, 1, "old")])
        store.record_files([ScoreRecord("/home/u/photos/a.jpg", 2, 2, "new")])
        store.record_files([ScoreRecord("/home/u/other/b.jpg", 2, 2, "other")])
        paths = sorted(r[0] for r in store._conn.execute("SELECT path FROM files"))
    assert paths == ["/home/u/other/b.jpg", "/home/u/photos/a.jpg"]
