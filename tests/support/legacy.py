"""A store as nsfw-tui wrote it at schema 5, before the loader checked each file's structure."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from nsfw_tui.core.store_schema import APP_ID, MIGRATIONS


def legacy_photos(folder: Path) -> tuple[Path, Path, Path]:
    """``folder`` with a whole JPEG, a zero-tailed one and a broken PNG: (whole, partial,
    broken), for a schema-5 store to have recorded before the structure check."""
    from support.imagegen import photo, zero_tailed

    folder.mkdir()
    whole = folder / "whole.jpg"
    photo((240, 180), 1).save(whole, quality=90)
    partial = zero_tailed(folder / "partial.jpg", 0.5)
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    return whole, partial, broken


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def schema_5_store(
    path: Path,
    model_id: str,
    scored: dict[Path, float],
    *,
    errors: dict[Path, tuple[str, str]] | None = None,
    labels: dict[Path, str] | None = None,
) -> None:
    """``path`` at schema 5, as the last version without the completeness check left it.

    Each file in ``scored`` was decoded whole then (a zero tail decoded to grey, say) and
    scored by ``model_id``; each in ``errors`` was refused with that (kind, reason). Rows carry
    the path, size and mtime of the file on disk now, so the file is unchanged since. Labels
    are ``label_events`` by a person.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for migration in MIGRATIONS[:5]:
            migration(conn)
        conn.execute("PRAGMA user_version=5")
        conn.execute(f"PRAGMA application_id={APP_ID}")
        rows = [(f, p, None, None) for f, p in scored.items()]
        rows += [(f, None, kind, why) for f, (kind, why) in (errors or {}).items()]
        for file, prob, kind, why in rows:
            st, sha = file.stat(), sha_of(file)
            conn.execute(
                "INSERT INTO files (path, sha256, size, mtime_ns, error_kind, error, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 1.0)",
                (str(file), sha, st.st_size, st.st_mtime_ns, kind, why),
            )
            conn.execute(
                "INSERT INTO images (sha256, size, width, height, format, n_frames, error_kind, "
                "error, first_seen, last_seen) VALUES (?, ?, 240, 180, 'JPEG', 1, ?, ?, 1.0, 1.0)",
                (sha, st.st_size, kind, why),
            )
            if prob is not None:
                conn.execute(
                    "INSERT INTO predictions (sha256, model_id, probability, n_frames, "
                    "created_at) VALUES (?, ?, ?, 1, 1.0)",
                    (sha, model_id, prob),
                )
        for file, label in (labels or {}).items():
            conn.execute(
                "INSERT INTO label_events (sha256, label, source, created_at) "
                "VALUES (?, ?, 'human', 1.0)",
                (sha_of(file), label),
            )
    finally:
        conn.close()
