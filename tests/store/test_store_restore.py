"""`restore` checks a backup fully and copies it into the live store, never replacing its files.

Every refused backup leaves the current store's content unchanged (docs/reliability.md, S9,
S13, S15); a good one is copied in with SQLite's backup API while other processes keep it open.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.errors import StoreError, StoreMissingError
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.store import Store
from nsfw_tui.core.store_backup import check_backup, restore
from nsfw_tui.core.store_files import marker_path, visible_backups
from nsfw_tui.core.store_schema import APP_ID, MIGRATIONS, SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def labels_of(path: Path) -> dict[str, str]:
    with Store.open(path) as store:
        return {sha: ev.label for sha, ev in store.current_labels().items()}


@pytest.fixture
def live(tmp_path) -> Path:
    path = tmp_path / "home" / "store.db"
    with Store.open(path) as store:
        store.set_labels([f"img-{i}" for i in range(20)], "nsfw", source="import")
    return path


def good_backup(tmp_path: Path, name: str = "good.db") -> Path:
    with Store.open(tmp_path / "other" / "store.db") as store:
        store.set_labels(["restored-a", "restored-b"], "sfw")
        return store.backup(tmp_path / name)


def tampered(tmp_path: Path, name: str, sql: list[str]) -> Path:
    path = good_backup(tmp_path, name)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sql:
        conn.execute(statement)
    conn.close()
    return path


BAD_BACKUPS = {
    "trigger": (
        ["CREATE TRIGGER wipe AFTER INSERT ON label_events BEGIN DELETE FROM label_events; END"],
        "unexpected: trigger wipe",
    ),
    "missing-table": (["DROP TABLE moves"], "table moves"),
    "extra-table": (["CREATE TABLE extra (x)"], "unexpected: table extra"),
    "view": (["CREATE VIEW v AS SELECT 1"], "unexpected: view v"),
    "invalid-label": (
        [
            "PRAGMA ignore_check_constraints=ON",
            "INSERT INTO label_events (sha256, label, source, created_at) "
            "VALUES ('x', 'maybe', 'human', 1.0)",
        ],
        "label_events",  # SQLite's integrity check or the explicit label query
    ),
    "unknown-source": (
        [
            "INSERT INTO label_events (sha256, label, source, created_at) "
            "VALUES ('x', 'nsfw', 'robot', 1.0)"
        ],
        "unknown source",
    ),
    "null-time": (
        [
            "PRAGMA ignore_check_constraints=ON",
            "PRAGMA writable_schema=OFF",
            "INSERT INTO label_events (sha256, label, source, created_at) "
            "VALUES ('', 'nsfw', 'human', 1.0)",
        ],
        "without an image",
    ),
    "newer-schema": ([f"PRAGMA user_version={SCHEMA_VERSION + 1}"], "newer nsfw-tui"),
    "other-application": (["PRAGMA application_id=1234"], "another application"),
    "two-active-models": (
        [
            "INSERT INTO models (id, kind, threshold, active) VALUES ('a', 'onnx', 0.5, 1)",
            "INSERT INTO models (id, kind, threshold, active) VALUES ('b', 'onnx', 0.5, 1)",
        ],
        "marked active",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BACKUPS))
def test_a_bad_backup_is_refused_and_the_store_is_unchanged(tmp_path, live, case):
    sql, reason = BAD_BACKUPS[case]
    backup = tampered(tmp_path, f"{case}.db", sql)
    before_labels, before_digest = labels_of(live), digest(live)
    backup_digest = digest(backup)
    with pytest.raises(StoreError) as info:
        restore(backup, live)
    message = str(info.value)
    assert reason in message
    assert "nsfw-tui restore" not in message  # never tells the user to run what they just ran
    assert labels_of(live) == before_labels
    assert digest(live) == before_digest
    assert digest(backup) == backup_digest
    assert not list(live.parent.glob("store.db.before-restore-*"))
    assert not list(live.parent.glob(".restore-*"))


def test_a_fifo_or_a_folder_is_not_a_regular_file(tmp_path, live):
    fifo = tmp_path / "backup.db"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        restore(fifo, live)
    with pytest.raises(StoreError, match="not a regular file"):
        check_backup(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        restore(tmp_path / "nope.db", live)


def test_a_good_restore_keeps_the_current_content_and_keeps_the_files_in_place(tmp_path, live):
    backup = good_backup(tmp_path)
    before = labels_of(live)
    inode = os.stat(live).st_ino
    kept, store_id = restore(backup, live)
    assert os.stat(live).st_ino == inode  # copied into, never renamed or replaced
    assert labels_of(live) == {"restored-a": "sfw", "restored-b": "sfw"}
    assert kept is not None and labels_of(kept) == before
    assert marker_path(live).read_text().strip() == store_id
    assert kept in visible_backups(live)
    conn = sqlite3.connect(live)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_an_older_schema_backup_is_migrated_after_the_copy(tmp_path, live):
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        migration(conn)
    conn.execute("PRAGMA user_version=2")
    conn.execute(
        "INSERT INTO label_events (sha256, label, source, created_at) "
        "VALUES ('old', 'nsfw', 'human', 1.0)"
    )
    conn.close()
    assert check_backup(old) == 2
    restore(old, live)
    with Store.open(live) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.current_labels()["old"].label == "nsfw"


def test_restore_brings_a_lost_store_back_and_empty_starts_over(tmp_path, live):
    with Store.open(live) as store:
        store.set_labels(["img-0"], None)
        store.set_labels(["restored-a", "restored-b"], "sfw")
        backup = store.backup(tmp_path / "mine.backup")
        store.set_labels(["img-1"], None)
    expected = labels_of(backup)
    for suffix in ("", "-wal", "-shm"):
        live.with_name(live.name + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreMissingError) as info:
        Store.open(live)
    assert str(backup) in str(info.value)  # the backup `nsfw-tui backup` wrote is named
    kept, _ = restore(backup, live)
    assert kept is None and labels_of(live) == expected
    kept, new_id = restore(None, live, empty=True)
    assert labels_of(live) == {} and labels_of(kept) == expected
    assert marker_path(live).read_text().strip() == new_id


def test_cli_restore_empty_asks_first(tmp_path):
    home = tmp_path / "home"
    runner = CliRunner()
    with Store.open(resolve_home(home).store_path) as store:
        store.set_labels(["a"], "nsfw")
    os.truncate(home / "store.db", 0)
    for side in ("-wal", "-shm"):
        (home / f"store.db{side}").unlink(missing_ok=True)
    refused = runner.invoke(app, ["labels", "--home", str(home)])
    assert refused.exit_code == 2
    assert "nsfw-tui restore --empty" in refused.output
    declined = runner.invoke(app, ["restore", "--empty", "--home", str(home)], input="n\n")
    assert declined.exit_code == 1 and os.stat(home / "store.db").st_size == 0
    agreed = runner.invoke(app, ["restore", "--empty", "--home", str(home)], input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert runner.invoke(app, ["labels", "--home", str(home)]).exit_code == 0
    neither = runner.invoke(app, ["restore", "--home", str(home)])
    assert neither.exit_code == 2


@pytest.mark.slow
def test_a_good_restore_while_a_watcher_has_the_store_open_leaves_both_working(tmp_path):
    from support.tui import FAKE_ID, headless_watch, prepare_home

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    Image.new("RGB", (24, 16), (250, 90, 160)).save(inbox / "first.png")
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    with Store.open(home.store_path) as store:
        store.set_labels(["restored-label"], "nsfw")
        backup = store.backup(tmp_path / "backup.db")
        store.set_labels(["later-label"], "sfw")
    proc, lines = headless_watch(inbox, home)
    try:
        assert json.loads(lines.get(timeout=60))["path"].endswith("first.png")
        argv = [sys.executable, "-m", "nsfw_tui.cli", "restore", str(backup)]
        argv += ["--home", str(home.root)]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        Image.new("RGB", (24, 16), (5, 90, 160)).save(inbox / "after.png")
        after = json.loads(lines.get(timeout=30))
        assert after["path"].endswith("after.png") and after["decision"] == "sfw"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    with Store.open(home.store_path) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        labels = {sha: ev.label for sha, ev in store.current_labels().items()}
        assert labels == {"restored-label": "nsfw"}
        scored = store.predictions(FAKE_ID)
        paths = {Path(p).name for sha in scored for p in store.paths_for(sha)}
    assert "after.png" in paths
