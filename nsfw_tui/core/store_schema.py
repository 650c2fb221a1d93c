"""The store's schema: migrations, the file's identity, and the checks that tell ours from others.

A store identifies itself through SQLite, never by reading the file with plain I/O (closing
any descriptor of the database drops this process's POSIX locks: docs/reliability.md, S14).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import uuid
from collections.abc import Callable

# "NSFW" in ASCII: the application_id every store written by this code carries in its header.
APP_ID = 0x4E534657
LABELS = ("nsfw", "sfw")
# Who appended a label event: a person on the screen, `import`, or an undo of either.
LABEL_SOURCES = ("human", "import", "undo")


# Each migration runs inside BEGIN IMMEDIATE together with its user_version bump, so a
# kill mid-migration leaves the previous version intact and the next start re-applies it.
def _migration_1(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE files (
            path TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, mtime_ns INTEGER,
            error_kind TEXT, error TEXT, seen_at REAL
        );
        CREATE INDEX files_sha256 ON files(sha256);
        CREATE TABLE images (
            sha256 TEXT PRIMARY KEY, size INTEGER, width INTEGER, height INTEGER,
            format TEXT, n_frames INTEGER, error_kind TEXT, error TEXT,
            first_seen REAL, last_seen REAL
        );
        CREATE TABLE label_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sha256 TEXT NOT NULL,
            label TEXT CHECK (label IN ('nsfw', 'sfw') OR label IS NULL),
            source TEXT NOT NULL,
            batch TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX label_events_sha256 ON label_events(sha256, id);
        CREATE INDEX label_events_batch ON label_events(batch);
        CREATE TABLE predictions (
            sha256 TEXT NOT NULL, model_id TEXT NOT NULL, probability REAL NOT NULL,
            n_frames INTEGER, created_at REAL,
            PRIMARY KEY (sha256, model_id)
        );
        CREATE TABLE features (
            sha256 TEXT NOT NULL, model_id TEXT NOT NULL, frame INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (sha256, model_id, frame)
        );
        CREATE TABLE models (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, path TEXT, threshold REAL NOT NULL,
            metrics TEXT, preprocessing TEXT, meta TEXT, created_at REAL,
            active INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, created_at REAL, finished_at REAL, status TEXT,
            config TEXT, epochs TEXT, metrics TEXT, checkpoint TEXT, model_id TEXT,
            val_hashes TEXT
        );
        """,
    )


def _migration_2(conn: sqlite3.Connection) -> None:
    # Quarantine moves made by `nsfw-tui watch`, and their releases; `dest` finds a move back.
    _run_script(
        conn,
        """
        CREATE TABLE moves (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sha256 TEXT, src TEXT NOT NULL, dest TEXT NOT NULL, reason TEXT,
            moved_at REAL NOT NULL, released_at REAL, released_to TEXT
        );
        CREATE INDEX moves_dest ON moves(dest);
        """,
    )


def _migration_3(conn: sqlite3.Connection) -> None:
    # The store's own id: the home's marker names it, so a missing or emptied store.db is
    # noticed instead of silently recreated (S15).
    _run_script(
        conn,
        "CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )
    conn.execute(
        "INSERT OR IGNORE INTO store_info (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,)
    )


def _migration_4(conn: sqlite3.Connection) -> None:
    # A quarantine move is recorded as intended before the file is renamed, then marked done;
    # a kill in between is completed or rolled back on the next start (W12).
    conn.execute("ALTER TABLE moves ADD COLUMN state TEXT NOT NULL DEFAULT 'done'")


# The store_info key naming the last move recorded before schema 5.
TEXT_NAMES_UPTO = "text_names_upto_move"


def _migration_5(conn: sqlite3.Connection) -> None:
    # Names that are not valid UTF-8 are stored as a BLOB of their raw bytes in files.path,
    # moves.src, moves.dest and moves.released_to (N1): their escaped text also names another
    # possible file. No table changes, but an older nsfw-tui would take those BLOBs for text,
    # so the version moves on (it opens this store read-only, S8). Rows written before hold
    # such names as escaped text: the last move among them is remembered, so that `release`
    # looks a name up by that text only there, never in a move recorded since.
    conn.execute(
        "INSERT OR REPLACE INTO store_info (key, value) "
        "SELECT ?, CAST(coalesce(max(id), 0) AS TEXT) FROM moves",
        (TEXT_NAMES_UPTO,),
    )


def _migration_6(conn: sqlite3.Connection) -> None:
    # The completeness check (structure.CHECK_VERSION) of the loader that last read each image.
    # Images recorded before it existed get 0: their cached predictions and "no error" may
    # come from a zero-tailed file decoded to grey, so they are not reused until the image
    # is read again (P12). Errors already recorded stay errors.
    conn.execute("ALTER TABLE images ADD COLUMN checked INTEGER NOT NULL DEFAULT 0")


def _migration_7(conn: sqlite3.Connection) -> None:
    # The time in seconds of the video frame that gave a prediction its probability (the
    # highest over the sampled frames), so the preview shows that frame. NULL for a still.
    conn.execute("ALTER TABLE predictions ADD COLUMN frame_time REAL")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the migration's transaction first: run statement by statement.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def migrate(conn: sqlite3.Connection, from_version: int) -> None:
    """Apply the migrations past ``from_version``; the caller holds the write lock."""
    for index in range(from_version, SCHEMA_VERSION):
        MIGRATIONS[index](conn)
        conn.execute(f"PRAGMA user_version={index + 1}")
    conn.execute(f"PRAGMA application_id={APP_ID}")


def schema_objects(conn: sqlite3.Connection) -> frozenset[tuple[str, str, str, str]]:
    """Every table, index, view and trigger the file defines, SQL text normalised."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master "
        "WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return frozenset((t, n, tbl, re.sub(r"\s+", " ", sql).strip()) for t, n, tbl, sql in rows)


@functools.cache
def expected_objects(version: int) -> frozenset[tuple[str, str, str, str]]:
    """The schema objects of a store at ``version``, rebuilt from the migrations in memory."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for index in range(version):
            MIGRATIONS[index](conn)
        return schema_objects(conn)
    finally:
        conn.close()


def is_known_schema(conn: sqlite3.Connection, version: int) -> bool:
    """True when the file holds exactly the objects of schema ``version`` and nothing else."""
    return 0 <= version <= SCHEMA_VERSION and schema_objects(conn) == expected_objects(version)


def invalid_rows(conn: sqlite3.Connection) -> list[str]:
    """Rows a store must never hold, checked by explicit queries; empty when all is well.

    `integrity_check` does not run CHECK constraints on a read-only connection, so label
    values are checked here by hand.
    """
    labels = ",".join(f"'{v}'" for v in LABELS)
    sources = ",".join(f"'{v}'" for v in LABEL_SOURCES)
    checks = {
        "label events with an unknown label": (
            f"SELECT count(*) FROM label_events WHERE label IS NOT NULL AND label NOT IN ({labels})"
        ),
        "label events with an unknown source": (
            f"SELECT count(*) FROM label_events WHERE source IS NULL OR source NOT IN ({sources})"
        ),
        "label events without an image or a time": (
            "SELECT count(*) FROM label_events WHERE sha256 IS NULL OR sha256 = '' "
            "OR created_at IS NULL OR typeof(created_at) NOT IN ('real', 'integer')"
        ),
        "models without a kind or a threshold in [0, 1]": (
            "SELECT count(*) FROM models WHERE kind IS NULL OR threshold IS NULL "
            "OR NOT (threshold BETWEEN 0 AND 1)"
        ),
        "predictions outside [0, 1]": (
            "SELECT count(*) FROM predictions WHERE probability IS NULL "
            "OR NOT (probability BETWEEN 0 AND 1)"
        ),
    }
    found = []
    for what, sql in checks.items():
        n = conn.execute(sql).fetchone()[0]
        if n:
            found.append(f"{n} {what}")
    active = conn.execute("SELECT count(*) FROM models WHERE active = 1").fetchone()[0]
    if active > 1:
        found.append(f"{active} models marked active at once")
    return found
