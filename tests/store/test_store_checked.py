"""Schema 6: which completeness check read each image, so results from before it are re-read.

Stores written before the loader walked each file's structure (P12) hold probabilities of
zero-tailed files decoded to grey. Migration 6 marks every image they hold as unchecked.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from support.imagegen import photo, zero_tailed
from support.legacy import schema_5_store, sha_of

from nsfw_tui.core.errors import StoreError
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.store_backup import check_backup, restore
from nsfw_tui.core.store_schema import (
    APP_ID,
    SCHEMA_VERSION,
    expected_objects,
    is_known_schema,
    migrate,
)
from nsfw_tui.core.structure import CHECK_VERSION


@pytest.fixture
def old_store(tmp_path):
    """A schema-5 store with a whole JPEG and a zero-tailed one, both scored SFW, and an error."""
    whole = tmp_path / "photos" / "whole.jpg"
    whole.parent.mkdir()
    photo((240, 180), 1).save(whole, quality=90)
    partial = zero_tailed(tmp_path / "photos" / "partial.jpg", 0.5)
    broken = tmp_path / "photos" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut")
    path = tmp_path / "home" / "store.db"
    path.parent.mkdir()
    schema_5_store(
        path,
        "m",
        {whole: 0.2, partial: 0.01},
        errors={broken: ("truncated", "PNG file is truncated")},
        labels={partial: "sfw"},
    )
    return path, whole, partial, broken


def columns(conn, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def test_a_schema_5_store_migrates_on_open_and_holds_every_image_unchecked(old_store):
    path, whole, partial, broken = old_store
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 6
        conn = store._conn
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APP_ID
        assert "checked" in columns(conn, "images")
        assert {r[0] for r in conn.execute("SELECT checked FROM images")} == {0}
        assert is_known_schema(conn, SCHEMA_VERSION) and not is_known_schema(conn, 5)
        rows = store.files([str(whole), str(partial), str(broken)])
        assert rows[str(whole)].unchecked and rows[str(partial)].unchecked
        assert not rows[str(broken)].unchecked, "an error stays an error, not read again"
        shas = [sha_of(p) for p in (whole, partial, broken)]
        assert store.unchecked(shas) == {sha_of(whole), sha_of(partial)}
        assert store.predictions("m") == {sha_of(whole): 0.2, sha_of(partial): 0.01}
        assert store.current_labels()[sha_of(partial)].label == "sfw"


def test_migration_6_is_one_transaction_with_its_version(old_store):
    path = old_store[0]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        migrate(conn, 5)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute("ROLLBACK")  # as a kill before the commit leaves it
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert "checked" not in columns(conn, "images")
        assert is_known_schema(conn, 5)
    finally:
        conn.close()
    with Store.open(path) as store:  # the next start applies it again
        assert store.schema_version == SCHEMA_VERSION


def test_a_schema_5_backup_is_restored_then_migrated(tmp_path, old_store):
    backup, whole, partial, _ = old_store
    assert check_backup(backup) == 5
    live = tmp_path / "live" / "store.db"
    with Store.open(live) as store:
        store.set_labels(["other"], "nsfw")
    restore(backup, live)
    with Store.open(live) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert is_known_schema(store._conn, SCHEMA_VERSION)
        assert store.unchecked([sha_of(whole), sha_of(partial)]) == {sha_of(whole), sha_of(partial)}
        assert {s: e.label for s, e in store.current_labels().items()} == {sha_of(partial): "sfw"}
    assert check_backup(live) == SCHEMA_VERSION


def test_a_version_6_backup_without_the_checked_column_is_refused(tmp_path, old_store):
    fake = old_store[0]
    conn = sqlite3.connect(fake, isolation_level=None)
    conn.execute("PRAGMA user_version=6")  # says 6, holds the tables of 5
    conn.close()
    with pytest.raises(StoreError, match="schema 6") as info:
        check_backup(fake)
    assert "table images" in str(info.value)
    assert expected_objects(6) != expected_objects(5)


def test_a_record_says_which_check_read_it_and_a_refused_content_loses_its_scores(tmp_path):
    with Store.open(tmp_path / "store.db") as store:
        feats = np.ones((1, 4), dtype=np.float32)
        store.record_files(
            [
                ScoreRecord("/a.jpg", 1, 1, "aa", 0.3, "m", features=feats, checked=CHECK_VERSION),
                ScoreRecord("/b.jpg", 1, 1, "bb", 0.4, "m", features=feats),  # claims no check
            ]
        )
        rows = store.files(["/a.jpg", "/b.jpg"])
        assert not rows["/a.jpg"].unchecked and rows["/a.jpg"].checked == CHECK_VERSION
        assert rows["/b.jpg"].unchecked and store.unchecked(["aa", "bb"]) == {"bb"}
        assert store.image("aa").checked == CHECK_VERSION
        # a failure of the moment says nothing of the content: its scores stay
        store.record_files([ScoreRecord("/b.jpg", 1, 1, "bb", error_kind="timeout", error="x")])
        assert store.predictions("m") == {"aa": 0.3, "bb": 0.4}
        # the loader refusing the content: no probability of it is left anywhere
        store.record_files(
            [
                ScoreRecord(
                    "/b.jpg", 1, 1, "bb", error_kind="truncated", error="y", checked=CHECK_VERSION
                )
            ]
        )
        assert store.predictions("m") == {"aa": 0.3}
        assert store.features("m", "bb").size == 0 and store.features("m", "aa").size == 4
        assert store.unchecked(["bb"]) == set(), "an error is not read again"
