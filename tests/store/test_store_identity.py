"""Which files the store adopts, and which it refuses untouched (docs/reliability.md, S15)."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from nsfw_tui.core.errors import StoreError, StoreMissingError
from nsfw_tui.core.store import Store
from nsfw_tui.core.store_files import marker_path
from nsfw_tui.core.store_schema import APP_ID, MIGRATIONS, SCHEMA_VERSION


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def legacy_store(path, version: int = 2, extra_sql: str | None = None) -> None:
    """A store as the releases before application_id wrote it: schema `version`, id 0."""
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:version]:
        migration(conn)
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute(
        "INSERT INTO label_events (sha256, label, source, created_at) VALUES ('a', 'nsfw', "
        "'human', 1.0)"
    )
    if extra_sql:
        conn.execute(extra_sql)
    conn.close()


def test_a_new_store_carries_the_application_id_and_a_marker(tmp_path):
    path = tmp_path / "store.db"
    with Store.open(path) as store:
        assert store._conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID
        assert store.schema_version == SCHEMA_VERSION
        store_id = store.store_id
    assert store_id and marker_path(path).read_text().strip() == store_id


def test_a_store_of_a_known_older_schema_is_adopted_and_keeps_its_labels(tmp_path):
    path = tmp_path / "store.db"
    legacy_store(path)
    with Store.open(path) as store:
        assert store._conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID
        assert store.schema_version == SCHEMA_VERSION
        assert store.current_labels()["a"].label == "nsfw"


@pytest.mark.parametrize(
    "extra",
    [
        "CREATE TABLE unrelated (x)",
        "CREATE TRIGGER wipe AFTER INSERT ON label_events BEGIN DELETE FROM label_events; END",
        "CREATE VIEW v AS SELECT * FROM files",
        "DROP TABLE moves",
    ],
    ids=["extra-table", "trigger", "view", "missing-table"],
)
def test_a_file_whose_schema_is_not_ours_is_refused_untouched(tmp_path, extra):
    path = tmp_path / "store.db"
    legacy_store(path, extra_sql=extra)
    before = digest(path)
    with pytest.raises(StoreError, match="not an nsfw-tui store") as info:
        Store.open(path)
    assert "nsfw-tui restore" in str(info.value)
    assert digest(path) == before
    assert not marker_path(path).exists()


def test_a_foreign_sqlite_file_and_another_applications_file_are_refused(tmp_path):
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    before = digest(foreign)
    with pytest.raises(StoreError, match="not an nsfw-tui store"):
        Store.open(foreign)
    assert digest(foreign) == before
    other_app = tmp_path / "other.db"
    legacy_store(other_app, version=SCHEMA_VERSION, extra_sql="PRAGMA application_id=1234")
    before = digest(other_app)
    with pytest.raises(StoreError, match="another application"):
        Store.open(other_app)
    assert digest(other_app) == before


@pytest.mark.parametrize("how", ["truncated", "deleted", "foreign"])
def test_a_home_that_held_a_store_refuses_to_start_over(tmp_path, how):
    path = tmp_path / "store.db"
    with Store.open(path) as store:
        store.set_labels(["a"], "nsfw")
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    if how == "truncated":
        os.truncate(path, 0)
    elif how == "deleted":
        path.unlink()
    else:
        path.unlink()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()
    existed = path.exists()
    size = path.stat().st_size if existed else None
    error = StoreMissingError if how != "foreign" else StoreError
    with pytest.raises(error) as info:
        Store.open(path)
    message = str(info.value)
    assert "nsfw-tui restore" in message
    if how != "foreign":
        assert "nsfw-tui restore --empty" in message
    assert path.exists() == existed
    if existed:
        assert path.stat().st_size == size
    assert not path.with_name("store.db-wal").exists()


def test_a_fifo_at_the_store_path_is_refused_without_blocking(tmp_path):
    path = tmp_path / "store.db"
    os.mkfifo(path)
    with pytest.raises(StoreError, match="not a regular file"):
        Store.open(path)
