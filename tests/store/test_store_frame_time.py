"""Schema 7: the time of a video's highest-scoring frame, kept with its prediction."""

from __future__ import annotations

import sqlite3

import pytest

from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.store_schema import (
    APP_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    is_known_schema,
    migrate,
)

VIDEO, STILL = "a" * 64, "b" * 64


@pytest.fixture
def schema_6(tmp_path):
    """A store at schema 6 holding one prediction, as the version before videos left it."""
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for migration in MIGRATIONS[:6]:
            migration(conn)
        conn.execute("PRAGMA user_version=6")
        conn.execute(f"PRAGMA application_id={APP_ID}")
        conn.execute(
            "INSERT INTO predictions (sha256, model_id, probability, n_frames, created_at) "
            "VALUES (?, 'm', 0.25, 1, 1.0)",
            (STILL,),
        )
    finally:
        conn.close()
    return path


def columns(conn, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def test_a_schema_6_store_migrates_and_keeps_its_predictions(schema_6):
    with Store.open(schema_6) as store:
        assert store.schema_version == SCHEMA_VERSION >= 7
        assert columns(store._conn, "predictions")[-1] == "frame_time"
        assert is_known_schema(store._conn, SCHEMA_VERSION)
        assert store.predictions("m") == {STILL: 0.25}
        assert store.frame_times("m", [STILL]) == {}, "an old prediction has no frame time"


def test_migration_7_is_one_transaction_with_its_version(schema_6):
    conn = sqlite3.connect(schema_6, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        migrate(conn, 6)
        assert "frame_time" in columns(conn, "predictions")
        conn.execute("ROLLBACK")  # as a kill before the commit leaves it
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
        assert "frame_time" not in columns(conn, "predictions")
        assert is_known_schema(conn, 6)
    finally:
        conn.close()
    with Store.open(schema_6) as store:  # the next start applies it again
        assert store.schema_version == SCHEMA_VERSION


def test_frame_times_prefer_the_models_own_and_leave_stills_out(tmp_path):
    with Store.open(tmp_path / "store.db") as store:
        store.record_files(
            [
                ScoreRecord("/v.mp4", 1, 1, VIDEO, 0.9, "m", frame_time=2.125),
                ScoreRecord("/s.png", 1, 1, STILL, 0.1, "m"),
            ]
        )
        store.record_files([ScoreRecord("/v.mp4", 1, 1, VIDEO, 0.4, "other", frame_time=7.5)])
        assert store.frame_times("m", [VIDEO, STILL]) == {VIDEO: 2.125}
        assert store.frame_times("other", [VIDEO]) == {VIDEO: 7.5}
        # a model that recorded no time (a head rescoring cached features) borrows one
        store.put_predictions("head", {VIDEO: (0.8, 16)})
        assert store.frame_times("head", [VIDEO])[VIDEO] in (2.125, 7.5)
