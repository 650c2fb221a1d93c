"""The label store: one SQLite file with images, label history, cached predictions, models, runs."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import StoreBusyError, StoreError, StoreMissingError, StoreReadOnlyError
from .names import is_utf8, key_path, path_key
from .names import path_text as path_text  # where most callers import it from
from .store_files import (
    missing_store_message,
    note_backup,
    read_marker,
    write_marker,
)
from .store_rows import (
    FeatureRow,
    FileRow,
    ImageRow,
    LabelBatch,
    LabelChange,
    LabelEvent,
    LabelledFile,
    ModelRow,
    MoveRow,
    RunRow,
    ScoreRecord,
    file_row,
    model_row,
    move_row,
    run_row,
)
from .store_schema import (
    APP_ID,
    LABELS,
    SCHEMA_VERSION,
    TEXT_NAMES_UPTO,
    is_known_schema,
    migrate,
)
from .structure import CHECK_VERSION

BUSY_TIMEOUT_S = 30.0
# An undo's batch id: this prefix, the batch it undid, a colon and a nonce.
UNDO_PREFIX = "undo:"

# The meta key of a model row that keeps the threshold it was registered with.
REGISTERED_THRESHOLD = "registered_threshold"
# SQLite caps bound parameters per statement; batch IN (...) queries below it.
_CHUNK = 900


def _now() -> float:
    return time.time()


def _restore_hint(path: Path) -> str:
    return (
        f"restore a backup with `nsfw-tui restore BACKUP_FILE` (the file {path} was left untouched)"
    )


def _identity(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    """(application_id, user_version, empty) read through SQLite; empty means no schema yet.

    An empty file, or one with an SQLite header and nothing in it, counts as empty: both are
    what a store looks like before its first migration commits.
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    empty = pages == 0 or (app_id == 0 and version == 0 and objects == 0)
    return app_id, version, empty


def _snapshot(conn: sqlite3.Connection) -> tuple[int, int, bool, bool]:
    """_identity() and whether the schema is a known one, read in one read transaction.

    Read one statement at a time, a process creating the store next door could commit in
    between: an empty header and a full schema would then look like a foreign file.
    """
    conn.execute("BEGIN")  # reads only: a snapshot, no write lock taken
    try:
        app_id, version, empty = _identity(conn)
        known = empty or app_id == APP_ID or is_known_schema(conn, version)
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
    return app_id, version, empty, known


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting (up to the busy timeout) for another process on the same file.

    The switch needs an exclusive lock. While another connection holds the write lock on a
    new or rollback-journal file, SQLite answers SQLITE_BUSY at once without calling the busy
    handler: two processes starting together on a new store failed in 37 of 200 rounds (S6).
    """
    deadline = time.monotonic() + conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(random.uniform(0.005, 0.02))


class Store:
    """One connection to the store. Open one per thread or process; never share across fork."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly_reason: str | None = None):
        self._conn = conn  # private: every write goes through write() (BEGIN IMMEDIATE)
        self.path = path
        self.readonly_reason = readonly_reason

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, timeout: float = BUSY_TIMEOUT_S, check: bool = True
    ) -> Store:
        """Open (creating if needed) and migrate the store at ``path``; refuse anything else.

        The file is identified through SQLite alone (application_id, schema), never read with
        plain file I/O (S14). A home that held a store never gets a new one silently (S15).
        ``check=False`` skips the integrity check, for the extra connections that worker
        threads open on a store the app has already checked.
        """
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StoreError(f"cannot read the store {path}: {exc.strerror or exc}") from exc
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise StoreError(f"the store path {path} is a folder, not a file")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise StoreError(f"the store path {path} is not a regular file")
        if st is None:
            if read_marker(path) is not None:
                raise StoreMissingError(missing_store_message(path, "is missing"))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for the store {path}: {exc}") from exc
        try:
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        try:
            store = cls._prepare(conn, path, check)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusyError(
                    f"the store {path} stayed busy for {timeout:.0f} s (another nsfw-tui "
                    "process is writing)"
                ) from exc
            if getattr(exc, "sqlite_errorcode", 0) == sqlite3.SQLITE_NOTADB:
                raise StoreError(
                    f"{path} is not an nsfw-tui store (not an SQLite file); {_restore_hint(path)}"
                ) from exc
            raise StoreError(f"the store {path} is damaged ({exc}); {_restore_hint(path)}") from exc
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def _prepare(cls, conn: sqlite3.Connection, path: Path, check: bool) -> Store:
        app_id, version, empty, known = _snapshot(conn)
        if empty and read_marker(path) is not None:
            # The marker is written after a new store's schema commits: look once more.
            app_id, version, empty, known = _snapshot(conn)
            if empty:
                raise StoreMissingError(missing_store_message(path, "is empty"))
        if not empty and app_id != APP_ID:
            if app_id != 0:
                raise StoreError(
                    f"{path} belongs to another application (SQLite application_id "
                    f"{app_id:#x}), not nsfw-tui; {_restore_hint(path)}"
                )
            # Stores written before application_id was set: adopted only when their schema
            # is exactly one this code wrote.
            if not known:
                raise StoreError(
                    f"{path} is an SQLite file but not an nsfw-tui store (its tables are not "
                    f"those of any nsfw-tui schema); {_restore_hint(path)}"
                )
        if version > SCHEMA_VERSION:
            conn.close()
            ro = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
            )
            reason = (
                f"the store {path} was written by a newer nsfw-tui (schema {version}, this "
                f"version knows {SCHEMA_VERSION}); it is open read-only, upgrade nsfw-tui to write"
            )
            return cls(ro, path, readonly_reason=reason)
        if check and not empty:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {result}")
        _enable_wal(conn)
        # Labels are a person's work: FULL makes a commit survive power loss, not just a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        store = cls(conn, path)
        if empty or version < SCHEMA_VERSION or app_id != APP_ID:
            store._migrate()
        store._remember()
        return store

    def _migrate(self) -> None:
        # Re-read everything under the write lock: another process may have created or
        # migrated the store meanwhile, or a marker may say this home held a store.
        with self.write():
            app_id, version, empty = _identity(self._conn)
            if empty and read_marker(self.path) is not None:
                raise StoreMissingError(missing_store_message(self.path, "is empty"))
            if app_id == APP_ID and version == SCHEMA_VERSION:
                return
            migrate(self._conn, version)

    def _remember(self) -> None:
        """Write the home's marker naming this store, so losing the store is noticed later."""
        store_id = self.store_id
        if store_id and read_marker(self.path) != store_id:
            write_marker(self.path, store_id)

    @property
    def store_id(self) -> str | None:
        row = self._conn.execute("SELECT value FROM store_info WHERE key = 'store_id'").fetchone()
        return row[0] if row else None

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def readonly(self) -> bool:
        return self.readonly_reason is not None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Store]:
        """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

        Deferred read-then-write transactions fail at once with SQLITE_BUSY_SNAPSHOT under
        a second writer, whatever the busy timeout; IMMEDIATE waits for the lock instead.
        """
        if self.readonly_reason:
            raise StoreReadOnlyError(self.readonly_reason)
        if self._conn.in_transaction:
            yield self
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _write_error(self.path, exc) from exc
        try:
            yield self
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _write_error(self.path, exc) from exc
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _write_error(self.path, exc) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        cur = self._conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def _in_chunks(self, sql: str, keys: Sequence[Any], extra: Sequence[Any] = ()) -> list[dict]:
        """Run ``sql`` (with one ``{marks}`` placeholder list) over keys in bounded chunks."""
        out: list[dict] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            out.extend(self._rows(sql.format(marks=marks), [*extra, *chunk]))
        return out

    # -- files and images ----------------------------------------------------------------

    # Paths go in and come out as the file system gives them (surrogate escapes for bytes
    # that are not UTF-8); each is stored under ``path_key``: its text, or its raw bytes as a
    # BLOB where the text would not be exact (N1, schema 5).

    # A file row with its image's completeness check version (0 without an image row).
    _FILE_COLUMNS = (
        "SELECT f.path, f.sha256, f.size, f.mtime_ns, f.error_kind, f.error, {seen}"
        "coalesce(i.checked, 0) AS checked FROM files f LEFT JOIN images i USING (sha256) "
    )

    def files(self, paths: Sequence[str]) -> dict[str, FileRow]:
        """Known files by path."""
        rows = self._in_chunks(
            self._FILE_COLUMNS.format(seen="") + "WHERE f.path IN ({marks})",
            [path_key(p) for p in paths],
        )
        return {row.path: row for row in (file_row(r) for r in rows)}

    def paths_for(self, sha256: str) -> list[str]:
        rows = self._rows("SELECT path FROM files WHERE sha256 = ?", [sha256])
        return [key_path(r["path"]) for r in rows]

    def image(self, sha256: str) -> ImageRow | None:
        rows = self._rows("SELECT * FROM images WHERE sha256 = ?", [sha256])
        return ImageRow(**rows[0]) if rows else None

    def unchecked(self, shas: Sequence[str]) -> set[str]:
        """Of ``shas``, the images recorded whole by a loader with an older completeness check
        (FileRow.unchecked): their cached predictions are not to be reused until read again."""
        rows = self._in_chunks(
            "SELECT sha256 FROM images WHERE error_kind IS NULL AND checked < ? "
            "AND sha256 IN ({marks})",
            list(dict.fromkeys(shas)),
            [CHECK_VERSION],
        )
        return {r["sha256"] for r in rows}

    def record_files(self, records: Iterable[ScoreRecord]) -> None:
        """Record scan results: files, images, predictions and features, in one transaction."""
        now = _now()
        with self.write():
            for r in records:
                self._conn.execute(
                    "INSERT INTO files (path, sha256, size, mtime_ns, error_kind, error, seen_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "sha256=excluded.sha256, size=excluded.size, mtime_ns=excluded.mtime_ns, "
                    "error_kind=excluded.error_kind, error=excluded.error, "
                    "seen_at=excluded.seen_at",
                    (path_key(r.path), r.sha256, r.size, r.mtime_ns, r.error_kind, r.error, now),
                )
                if r.path.startswith("/"):
                    # Rows that early versions stored relative to the working directory: the
                    # same content or the same file seen again at an absolute path replaces
                    # them; they are never resolved against the current directory (S16).
                    # Those rows are text; a BLOB key (N1) is always an absolute path.
                    self._conn.execute(
                        "DELETE FROM files WHERE typeof(path) = 'text' AND "
                        "substr(path, 1, 1) != '/' AND "
                        "(sha256 = ? OR substr(?, -length(path) - 1) = '/' || path)",
                        (r.sha256, path_key(r.path)),
                    )
                if r.sha256 is None:
                    continue
                self._conn.execute(
                    "INSERT INTO images (sha256, size, width, height, format, n_frames, "
                    "error_kind, error, first_seen, last_seen, checked) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(sha256) DO UPDATE SET size=excluded.size, "
                    "width=coalesce(excluded.width, width), "
                    "height=coalesce(excluded.height, height), "
                    "format=coalesce(excluded.format, format), "
                    "n_frames=coalesce(excluded.n_frames, n_frames), "
                    "error_kind=excluded.error_kind, error=excluded.error, "
                    "last_seen=excluded.last_seen, checked=excluded.checked",
                    (
                        r.sha256,
                        r.size,
                        r.width,
                        r.height,
                        r.format,
                        r.n_frames,
                        r.error_kind,
                        r.error,
                        now,
                        now,
                        r.checked,
                    ),
                )
                if r.error_kind is not None and r.checked:
                    # The loader refused the content itself: what an older version scored
                    # from it (a zero tail decoded to grey, P12) is no probability of it.
                    for table in ("predictions", "features"):
                        self._conn.execute(f"DELETE FROM {table} WHERE sha256 = ?", (r.sha256,))
                if r.probability is None or r.model_id is None:
                    continue
                self._conn.execute(
                    "INSERT OR REPLACE INTO predictions "
                    "(sha256, model_id, probability, n_frames, created_at, frame_time) "
                    "VALUES (?,?,?,?,?,?)",
                    (r.sha256, r.model_id, float(r.probability), r.n_frames, now, r.frame_time),
                )
                if r.features is not None:
                    self._conn.execute(
                        "DELETE FROM features WHERE sha256 = ? AND model_id = ?",
                        (r.sha256, r.model_id),
                    )
                    feats = np.asarray(r.features, dtype=np.float16)
                    self._conn.executemany(
                        "INSERT INTO features (sha256, model_id, frame, vector) VALUES (?,?,?,?)",
                        [(r.sha256, r.model_id, i, f.tobytes()) for i, f in enumerate(feats)],
                    )

    def mark_checked(self, shas: Iterable[str], version: int) -> None:
        """Record that a loader with completeness check ``version`` read these images again
        and found each whole, as recorded; nothing else about them or their files changes."""
        rows = [(version, sha) for sha in shas]
        if not rows:
            return
        with self.write():
            self._conn.executemany(
                "UPDATE images SET checked = ? WHERE sha256 = ? AND error_kind IS NULL", rows
            )

    def forget_missing(self, paths: Sequence[str]) -> None:
        """Drop file rows for paths that no longer exist (images and labels stay)."""
        with self.write():
            for start in range(0, len(paths), _CHUNK):
                chunk = [path_key(p) for p in paths[start : start + _CHUNK]]
                self._conn.execute(
                    f"DELETE FROM files WHERE path IN ({','.join('?' * len(chunk))})", chunk
                )

    # -- quarantine moves ----------------------------------------------------------------

    def _move_file_row(self, src: str | bytes, dest: str | bytes) -> None:
        # The bytes, size and mtime travel with the file: its row follows it to the new path.
        # Both are stored keys (path_key), as the moves table holds them.
        self._conn.execute("DELETE FROM files WHERE path = ?", (dest,))
        self._conn.execute("UPDATE files SET path = ? WHERE path = ?", (dest, src))

    def record_move(self, src: str, dest: str, sha256: str | None, reason: str) -> int:
        """Record that the file at ``src`` now lies at ``dest`` (quarantine); returns its id."""
        with self.write():
            move_id = self.intend_move(src, dest, sha256, reason)
            self.complete_move(move_id)
        return move_id

    def intend_move(self, src: str, dest: str, sha256: str | None, reason: str) -> int:
        """Record, before the rename, that ``src`` is about to move to ``dest`` (W12)."""
        with self.write():
            cur = self._conn.execute(
                "INSERT INTO moves (sha256, src, dest, reason, moved_at, state) "
                "VALUES (?,?,?,?,?,'intended')",
                (sha256, path_key(src), path_key(dest), reason, _now()),
            )
        return int(cur.lastrowid)

    def complete_move(self, move_id: int) -> None:
        """The intended move happened: the file row follows the file. Done twice is a no-op."""
        with self.write():
            row = self._rows("SELECT src, dest, state FROM moves WHERE id = ?", [move_id])
            if not row:
                raise StoreError(f"no quarantine move with id {move_id}")
            if row[0]["state"] == "done":
                return  # a recovery (W12) finished it first; moving the row again would drop it
            self._conn.execute(
                "UPDATE moves SET state = 'done', moved_at = ? WHERE id = ?", (_now(), move_id)
            )
            self._move_file_row(row[0]["src"], row[0]["dest"])

    def abandon_move(self, move_id: int) -> None:
        """The intended move did not happen: it leaves no record."""
        with self.write():
            self._conn.execute("DELETE FROM moves WHERE id = ? AND state = 'intended'", (move_id,))

    def intended_moves(self) -> list[MoveRow]:
        """Moves recorded as intended and never completed or abandoned (a kill in between)."""
        rows = self._rows("SELECT * FROM moves WHERE state = 'intended' ORDER BY id")
        return [move_row(r) for r in rows]

    def open_move(self, dest: str) -> MoveRow | None:
        """The newest move into ``dest`` that has not been released, if any.

        Moves recorded before schema 5 kept a name that is not UTF-8 as its escaped text;
        for such a name those older moves (and only they) are looked up by that text.
        """
        sql = (
            "SELECT * FROM moves WHERE dest = ? AND released_at IS NULL AND state = 'done' "
            "{older}ORDER BY id DESC LIMIT 1"
        )
        rows = self._rows(sql.format(older=""), [path_key(dest)])
        if not rows and not is_utf8(dest):
            older = "AND typeof(dest) = 'text' AND id <= ? "
            rows = self._rows(sql.format(older=older), [path_text(dest), self._text_names_upto()])
        return move_row(rows[0]) if rows else None

    def _text_names_upto(self) -> int:
        """The last move recorded before schema 5 (whose names may be escaped text)."""
        row = self._conn.execute(
            "SELECT value FROM store_info WHERE key = ?", [TEXT_NAMES_UPTO]
        ).fetchone()
        return int(row[0]) if row else 0

    def record_release(self, move_id: int, to: str) -> None:
        """Record that a quarantined file went back (to ``to``, its source or a free name)."""
        with self.write():
            row = self._rows("SELECT dest FROM moves WHERE id = ?", [move_id])
            if not row:
                raise StoreError(f"no quarantine move with id {move_id}")
            self._conn.execute(
                "UPDATE moves SET released_at = ?, released_to = ? WHERE id = ?",
                (_now(), path_key(to), move_id),
            )
            self._move_file_row(row[0]["dest"], path_key(to))

    def moves(self) -> list[MoveRow]:
        rows = self._rows("SELECT * FROM moves WHERE state = 'done' ORDER BY id")
        return [move_row(r) for r in rows]

    def files_seen_since(self, folder: str, since: float) -> list[FileRow]:
        """File rows under ``folder`` recorded at or after ``since``, oldest first."""
        # Compared as bytes: a TEXT key casts to its UTF-8 bytes, a BLOB key (N1) is bytes.
        prefix = os.fsencode(folder.rstrip(os.sep) + os.sep)
        rows = self._rows(
            self._FILE_COLUMNS.format(seen="f.seen_at, ")
            + "WHERE f.seen_at >= ? AND substr(CAST(f.path AS BLOB), 1, ?) = ? "
            "ORDER BY f.seen_at, f.path",
            [since, len(prefix), prefix],
        )
        return [file_row(r) for r in rows]

    # -- predictions ---------------------------------------------------------------------

    def predictions(self, model_id: str, shas: Sequence[str] | None = None) -> dict[str, float]:
        if shas is None:
            rows = self._rows(
                "SELECT sha256, probability FROM predictions WHERE model_id = ?", [model_id]
            )
        else:
            rows = self._in_chunks(
                "SELECT sha256, probability FROM predictions WHERE model_id = ? "
                "AND sha256 IN ({marks})",
                list(shas),
                [model_id],
            )
        return {r["sha256"]: r["probability"] for r in rows}

    def frame_times(self, model_id: str, shas: Sequence[str]) -> dict[str, float]:
        """The time of the highest-scoring frame of each video among ``shas``: the one
        ``model_id`` scored highest, else the one another model recorded (a head rescoring
        from cached features records none). Stills are left out."""
        rows = self._in_chunks(
            "SELECT sha256, frame_time, model_id = ? AS own FROM predictions "
            "WHERE frame_time IS NOT NULL AND sha256 IN ({marks}) ORDER BY own",
            list(shas),
            [model_id],
        )
        return {r["sha256"]: r["frame_time"] for r in rows}  # the model's own row comes last

    def features(self, model_id: str, sha256: str) -> np.ndarray:
        rows = self._rows(
            "SELECT vector FROM features WHERE model_id = ? AND sha256 = ? ORDER BY frame",
            [model_id, sha256],
        )
        if not rows:
            return np.zeros((0, 0), dtype=np.float16)
        return np.stack([np.frombuffer(r["vector"], dtype=np.float16) for r in rows])

    def put_predictions(self, model_id: str, scores: dict[str, tuple[float, int | None]]) -> None:
        """Cache probabilities (and frame counts) for ``model_id`` in one transaction."""
        now = _now()
        with self.write():
            self._conn.executemany(
                "INSERT OR REPLACE INTO predictions (sha256, model_id, probability, n_frames, "
                "created_at) VALUES (?,?,?,?,?)",
                [(sha, model_id, float(p), n, now) for sha, (p, n) in scores.items()],
            )

    def feature_rows(
        self, model_ids: Sequence[str], shas: Sequence[str] | None = None
    ) -> Iterator[FeatureRow]:
        """Cached feature frames of ``model_ids`` in primary-key order (sha, model, frame).

        Streams: a whole store's features never sit in memory at once. With ``shas``, they
        are read in sorted chunks, so the rows stay in sha order.
        """
        sources = list(model_ids)
        marks = ",".join("?" * len(sources))
        sql = (
            f"SELECT sha256, model_id, vector FROM features WHERE model_id IN ({marks}){{shas}} "
            "ORDER BY sha256, model_id, frame"  # the primary key's order: no sort of the blobs
        )
        if shas is None:
            for row in self._conn.execute(sql.format(shas=""), sources):
                yield FeatureRow(*row)
            return
        wanted = sorted(set(shas))
        for i in range(0, len(wanted), _CHUNK):
            part = wanted[i : i + _CHUNK]
            query = sql.format(shas=f" AND sha256 IN ({','.join('?' * len(part))})")
            for row in self._conn.execute(query, [*sources, *part]):
                yield FeatureRow(*row)

    # -- labels --------------------------------------------------------------------------

    def set_labels(
        self, shas: Iterable[str], label: str | None, source: str = "human"
    ) -> str | None:
        """Append one label event per image (``None`` clears); returns the batch id for undo.

        Images whose current label already equals ``label`` get no event, so an undo of the
        batch touches only what it changed. Returns None when nothing changed.
        """
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS} or None, got {label!r}")
        batch = uuid.uuid4().hex
        now = _now()
        with self.write():
            shas = list(dict.fromkeys(shas))
            current = self.current_labels(shas)
            changed = [s for s in shas if (current[s].label if s in current else None) != label]
            self._conn.executemany(
                "INSERT INTO label_events (sha256, label, source, batch, created_at) "
                "VALUES (?,?,?,?,?)",
                [(s, label, source, batch, now) for s in changed],
            )
        return batch if changed else None

    def undo_batch(self, batch: str) -> int:
        """Undo a label batch by appending events that restore each image's previous label.

        The undo is a batch of its own whose id names the batch it undid, so
        ``newest_batch`` can step past both (an undo is never itself undone).
        """
        now = _now()
        undo = f"{UNDO_PREFIX}{batch}:{uuid.uuid4().hex[:8]}"
        with self.write():
            changes = self._undo_changes(batch)
            self._conn.executemany(
                "INSERT INTO label_events (sha256, label, source, batch, created_at) "
                "VALUES (?,?,?,?,?)",
                [(c["sha256"], c["previous"], "undo", undo, now) for c in changes],
            )
        return len(changes)

    def _undo_changes(self, batch: str) -> list[dict]:
        return self._rows(
            "SELECT e.sha256, "
            "(SELECT p.label FROM label_events p WHERE p.sha256 = e.sha256 AND p.id < e.id "
            " ORDER BY p.id DESC LIMIT 1) AS previous, "
            "(SELECT c.label FROM label_events c WHERE c.sha256 = e.sha256 "
            " ORDER BY c.id DESC LIMIT 1) AS current "
            "FROM label_events e WHERE e.batch = ? ORDER BY e.id",
            [batch],
        )

    def newest_batch(self) -> LabelBatch | None:
        """The newest label batch that is not an undo and has not been undone (None: none).

        Each undo steps one batch further back, like undo in an editor.
        """
        undone: set[str] = set()
        rows = self._conn.execute(
            "SELECT batch, source, MAX(id), MIN(created_at), count(*) FROM label_events "
            "WHERE batch IS NOT NULL GROUP BY batch ORDER BY MAX(id) DESC"
        )
        for batch, source, _, created_at, size in rows:
            if batch.startswith(UNDO_PREFIX):
                undone.add(batch[len(UNDO_PREFIX) :].rsplit(":", 1)[0])
            elif source != "undo" and batch not in undone:
                return LabelBatch(batch, source, created_at, size)
        return None

    def undo_preview(self, batch: str) -> list[LabelChange]:
        """What ``undo_batch(batch)`` would do to each image it touched, with a path."""
        changes = self._undo_changes(batch)
        paths = self._last_paths([c["sha256"] for c in changes])
        return [
            LabelChange(c["sha256"], paths.get(c["sha256"]), c["current"], c["previous"])
            for c in changes
        ]

    def current_labels(self, shas: Sequence[str] | None = None) -> dict[str, LabelEvent]:
        """The newest event per image whose label is not cleared."""
        # SQLite returns the bare columns of the row holding MAX(id).
        base = (
            "SELECT MAX(id) AS id, sha256, label, source, batch, created_at FROM label_events "
            "{where} GROUP BY sha256"
        )
        if shas is None:
            rows = self._rows(base.format(where=""))
        else:
            rows = self._in_chunks(base.format(where="WHERE sha256 IN ({marks})"), list(shas))
        return {r["sha256"]: LabelEvent(**r) for r in rows if r["label"] is not None}

    def batch_images(self, batch: str) -> list[str]:
        """The images a label batch touched, in the order it touched them."""
        rows = self._rows("SELECT sha256 FROM label_events WHERE batch = ? ORDER BY id", [batch])
        return [r["sha256"] for r in rows]

    def label_history(self, sha256: str) -> list[LabelEvent]:
        rows = self._rows(
            "SELECT id, sha256, label, source, batch, created_at FROM label_events "
            "WHERE sha256 = ? ORDER BY id",
            [sha256],
        )
        return [LabelEvent(**r) for r in rows]

    def labelled_files(self) -> list[LabelledFile]:
        """Current labels joined with a last-seen absolute path (path may be None).

        A path stored relative by an early version is not used: it would be resolved
        against whatever directory this command runs in (S16).
        """
        labels = self.current_labels()
        if not labels:
            return []
        paths = self._last_paths(list(labels))
        return [
            LabelledFile(paths.get(sha), sha, ev.label, ev.source, ev.created_at)
            for sha, ev in sorted(labels.items(), key=lambda kv: paths.get(kv[0]) or "")
        ]

    def _last_paths(self, shas: Sequence[str]) -> dict[str, str]:
        """The absolute path each image was last seen at (images never seen are left out)."""
        paths: dict[str, str] = {}
        for r in self._in_chunks(
            "SELECT sha256, path FROM files WHERE sha256 IN ({marks}) "
            "AND substr(CAST(path AS BLOB), 1, 1) = x'2f' ORDER BY seen_at",
            list(shas),
        ):
            paths[r["sha256"]] = key_path(r["path"])  # the newest sighting wins
        return paths

    # -- models --------------------------------------------------------------------------

    def add_model(
        self,
        model_id: str,
        kind: str,
        *,
        threshold: float,
        path: str | None = None,
        metrics: dict | None = None,
        preprocessing: dict | None = None,
        meta: dict | None = None,
        activate: bool = False,
    ) -> None:
        """Register a model, or update a known one's files and metadata (its threshold stays).

        The threshold it is registered with is kept in its meta (REGISTERED_THRESHOLD), so
        `models threshold --reset` can go back to it after `calibrate` or a hand-set one.
        """
        meta = {**(meta or {}), REGISTERED_THRESHOLD: float(threshold)}
        with self.write():
            self._conn.execute(
                "INSERT INTO models (id, kind, path, threshold, metrics, preprocessing, meta, "
                "created_at, active) VALUES (?,?,?,?,?,?,?,?,0) ON CONFLICT(id) DO UPDATE SET "
                "kind=excluded.kind, path=excluded.path, metrics=excluded.metrics, "
                "preprocessing=excluded.preprocessing, meta=excluded.meta",
                (
                    model_id,
                    kind,
                    path,
                    float(threshold),
                    json.dumps(metrics or {}),
                    json.dumps(preprocessing) if preprocessing else None,
                    json.dumps(meta),
                    _now(),
                ),
            )
            if activate or self.active_model() is None:
                self.set_active(model_id)

    def models(self) -> list[ModelRow]:
        return [model_row(r) for r in self._rows("SELECT * FROM models ORDER BY created_at")]

    def model(self, model_id: str) -> ModelRow | None:
        rows = self._rows("SELECT * FROM models WHERE id = ?", [model_id])
        return model_row(rows[0]) if rows else None

    def active_model(self) -> ModelRow | None:
        rows = self._rows("SELECT * FROM models WHERE active = 1 LIMIT 1")
        return model_row(rows[0]) if rows else None

    def set_active(self, model_id: str) -> None:
        with self.write():
            if not self._rows("SELECT id FROM models WHERE id = ?", [model_id]):
                known = ", ".join(m.id for m in self.models()) or "none"
                raise StoreError(f"no model with id {model_id!r} (known: {known})")
            self._conn.execute("UPDATE models SET active = (id = ?)", [model_id])

    def set_threshold(self, model_id: str, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        with self.write():
            cur = self._conn.execute(
                "UPDATE models SET threshold = ? WHERE id = ?", [threshold, model_id]
            )
            if cur.rowcount == 0:
                raise StoreError(f"no model with id {model_id!r}")

    # -- runs ----------------------------------------------------------------------------

    def insert_run(
        self, run_id: str, config: dict[str, Any], summary: dict[str, Any], val_hashes: list[str]
    ) -> None:
        with self.write():
            self._conn.execute(
                "INSERT INTO runs (id, created_at, status, config, epochs, metrics, val_hashes) "
                "VALUES (?, ?, 'running', ?, '[]', ?, ?)",
                (run_id, _now(), json.dumps(config), json.dumps(summary), json.dumps(val_hashes)),
            )

    def update_run_epochs(self, run_id: str, epochs: list[dict[str, Any]]) -> None:
        # per epoch, so a run killed mid-way still shows how far it got
        with self.write():
            self._conn.execute(
                "UPDATE runs SET epochs = ? WHERE id = ?", (json.dumps(epochs), run_id)
            )

    def close_run(
        self,
        run_id: str,
        status: str,
        epochs: list[dict[str, Any]],
        summary: dict[str, Any],
        *,
        checkpoint: str | None = None,
        model_id: str | None = None,
    ) -> None:
        with self.write():
            self._conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, epochs = ?, metrics = ?, "
                "checkpoint = ?, model_id = ? WHERE id = ?",
                (
                    status,
                    _now(),
                    json.dumps(epochs),
                    json.dumps(summary),
                    checkpoint,
                    model_id,
                    run_id,
                ),
            )

    def runs(self) -> list[RunRow]:
        """Every training run, newest first."""
        rows = self._rows("SELECT * FROM runs ORDER BY created_at DESC, id DESC")
        return [run_row(r) for r in rows]

    def run(self, run_id: str | None = None) -> RunRow | None:
        """One run by id, or the latest when ``run_id`` is None; None when there is none."""
        if run_id is None:
            rows = self._rows("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT 1")
        else:
            rows = self._rows("SELECT * FROM runs WHERE id = ?", [run_id])
        return run_row(rows[0]) if rows else None

    # -- counts and backups --------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        def one(sql: str) -> int:
            return self._conn.execute(sql).fetchone()[0]

        return {
            "files": one("SELECT count(*) FROM files"),
            "images": one("SELECT count(*) FROM images"),
            "predictions": one("SELECT count(*) FROM predictions"),
            "label_events": one("SELECT count(*) FROM label_events"),
            "models": one("SELECT count(*) FROM models"),
        }

    def remote_files(self) -> int:
        """Files known by a URI (``s3://...``) or as a member of a tar shard (``SHARD#NAME``),
        as `import-scores` stores them: scored elsewhere, their bytes not on this machine."""
        sql = (
            "SELECT count(*) FROM files WHERE typeof(path) = 'text' AND "
            "(path GLOB '[A-Za-z][A-Za-z0-9+.-]*://*' OR path GLOB '*.tar#*')"
        )
        return self._conn.execute(sql).fetchone()[0]

    def backup(self, dest: str | os.PathLike) -> Path:
        """Copy the live store with SQLite's online backup API (never a file copy)."""
        dest = Path(dest)
        if dest.exists():
            raise StoreError(f"{dest} already exists; choose a new file name for the backup")
        try:
            with atomic_path(dest) as tmp:
                target = sqlite3.connect(tmp)
                try:
                    self._conn.backup(target)
                finally:
                    target.close()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"backup to {dest} failed: {exc}") from exc
        note_backup(self.path, dest)
        return dest


def _write_error(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusyError(
            f"the store {path} stayed busy (another nsfw-tui process is writing); "
            "nothing was written, try again"
        )
    if "full" in text:
        return StoreError(f"the disk holding {path} is full; nothing was written")
    if "readonly" in text or "read-only" in text:
        return StoreReadOnlyError(f"the store {path} is read-only; nothing was written")
    return StoreError(f"writing the store {path} failed: {text}")
