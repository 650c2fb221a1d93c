"""Backups and restores of the store, only ever through SQLite's backup API (S9, S13, S15).

A restore never renames or replaces `store.db`, `-wal` or `-shm`: another process may have
them open. It checks a temporary copy of the backup, keeps the current content beside the
store, then copies the checked content into the live store under SQLite's write lock.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

from .errors import StoreError
from .store_schema import (
    APP_ID,
    SCHEMA_VERSION,
    expected_objects,
    invalid_rows,
    migrate,
    schema_objects,
)

BUSY_TIMEOUT_S = 30.0


def _regular_file(path: Path, what: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise StoreError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise StoreError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{what} {path} is not a regular file")


def _copy(src: sqlite3.Connection, dest: Path) -> sqlite3.Connection:
    target = sqlite3.connect(dest, isolation_level=None)
    try:
        src.backup(target)
    except BaseException:
        target.close()
        raise
    return target


def checked_copy(backup: str | os.PathLike, workdir: Path) -> tuple[Path, int]:
    """A temporary copy of ``backup`` in ``workdir``, checked and migrated to this schema.

    Returns the copy and the schema version the backup was written with.

    Refused with the reason: not a regular file, not SQLite, another application's file, a
    schema this code does not know or with anything extra (tables, views, triggers), a failed
    integrity check, or rows no store may hold.
    """
    backup = Path(backup)
    _regular_file(backup, "the backup file")
    copy = workdir / "checked.db"
    try:
        src = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn = _copy(src, copy)
        finally:
            src.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) == sqlite3.SQLITE_NOTADB:
            raise StoreError(f"{backup} is not an nsfw-tui backup (not an SQLite file)") from exc
        raise StoreError(f"{backup} cannot be read as an SQLite file: {exc}") from exc
    try:
        _check(conn, backup)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION or conn.execute("PRAGMA application_id").fetchone()[0] == 0:
            conn.execute("BEGIN IMMEDIATE")
            migrate(conn, version)
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{backup} is damaged: {exc}") from exc
    finally:
        conn.close()
    return copy, version


def _check(conn: sqlite3.Connection, backup: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id not in (0, APP_ID):
        raise StoreError(
            f"{backup} belongs to another application (SQLite application_id {app_id:#x}), "
            "not nsfw-tui"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{backup} was written by a newer nsfw-tui (schema {version}, this version knows "
            f"{SCHEMA_VERSION}); upgrade nsfw-tui to restore it"
        )
    if version < 1 or schema_objects(conn) != expected_objects(version):
        extra = sorted(
            f"{kind} {name}"
            for kind, name, _, _ in schema_objects(conn) - expected_objects(max(version, 0))
        )
        missing = sorted(
            f"{kind} {name}"
            for kind, name, _, _ in expected_objects(max(version, 0)) - schema_objects(conn)
        )
        detail = "; ".join(
            part
            for part in (
                f"unexpected: {', '.join(extra)}" if extra else "",
                f"missing: {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise StoreError(
            f"{backup} is not an nsfw-tui backup: its schema is not that of nsfw-tui schema "
            f"{version} ({detail or 'no tables'})"
        )
    result = "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    if result != "ok":
        raise StoreError(f"{backup} fails SQLite's integrity check: {result}")
    bad = invalid_rows(conn)
    if bad:
        raise StoreError(f"{backup} holds rows no store may hold: {'; '.join(bad)}")


def check_backup(backup: str | os.PathLike) -> int:
    """Verify that ``backup`` is a sound nsfw-tui store; returns its schema version."""
    with tempfile.TemporaryDirectory(prefix="nsfw-tui-check-") as tmp:
        return checked_copy(backup, Path(tmp))[1]


def _kept_name(store_path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = store_path.with_name(f"{store_path.name}.before-restore-{stamp}")
    n = 1
    while kept.exists():  # a second restore in the same second keeps the first
        kept = store_path.with_name(f"{store_path.name}.before-restore-{stamp}-{n}")
        n += 1
    return kept


def _keep_current(store_path: Path) -> Path | None:
    """Save the live store's content beside it (backup API); None when there is none."""
    try:
        st = os.stat(store_path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"the store path {store_path} is not a regular file")
    kept = _kept_name(store_path)
    live = sqlite3.connect(store_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        if live.execute("PRAGMA page_count").fetchone()[0] == 0:
            return None
        _copy(live, kept).close()
    except sqlite3.DatabaseError as exc:
        Path(kept).unlink(missing_ok=True)
        if getattr(exc, "sqlite_errorcode", 0) != sqlite3.SQLITE_NOTADB:
            raise StoreError(f"cannot keep the current store {store_path}: {exc}") from exc
        # Not an SQLite file at all: no nsfw-tui process can have it open as a store, so the
        # bytes are moved aside whole and the restore writes a new file.
        live.close()
        os.replace(store_path, kept)
        for suffix in ("-wal", "-shm"):
            store_path.with_name(store_path.name + suffix).unlink(missing_ok=True)
    finally:
        live.close()
    return kept


def _into_live(copy: Path, store_path: Path) -> None:
    """Copy the checked content into the live store under its write lock (backup API)."""
    src = sqlite3.connect(copy, isolation_level=None)
    try:
        dst = sqlite3.connect(store_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            live_page = dst.execute("PRAGMA page_size").fetchone()[0]
            if dst.execute("PRAGMA page_count").fetchone()[0] and (
                src.execute("PRAGMA page_size").fetchone()[0] != live_page
            ):
                # A WAL database cannot change its page size: give the copy the live one.
                src.execute(f"PRAGMA page_size={live_page}")
                src.execute("VACUUM")
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def restore(
    backup: str | os.PathLike | None, store_path: str | os.PathLike, *, empty: bool = False
) -> tuple[Path | None, str]:
    """Put a checked backup's content (or, with ``empty``, a new store) into the live store.

    Returns where the previous content was kept (None if there was none) and the restored
    store's id. The current store is untouched when the backup is refused.
    """
    from .store import Store

    store_path = Path(store_path)
    try:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".restore-", dir=store_path.parent))
    except OSError as exc:
        raise StoreError(f"cannot prepare the restore next to {store_path}: {exc}") from exc
    try:
        if empty:
            copy = work / "empty.db"
            Store.open(copy).close()
        else:
            assert backup is not None
            copy, _ = checked_copy(backup, work)
        try:
            kept = _keep_current(store_path)
            _into_live(copy, store_path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"restore into {store_path} failed: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with Store.open(store_path) as store:  # migrates if needed and updates the home's marker
        store_id = store.store_id or "unknown"
    return kept, store_id
