"""The files a home keeps beside its store: the marker naming it, and the list of backups.

Plain files, never the database itself: reading them drops no SQLite lock (S14, S15).
"""

from __future__ import annotations

from pathlib import Path

from .atomic import atomic_write
from .errors import StoreError


def marker_path(store_path: Path) -> Path:
    """The small file beside a store that remembers which store this home holds (S15)."""
    return store_path.with_name(store_path.name + ".id")


def read_marker(store_path: Path) -> str | None:
    try:
        return marker_path(store_path).read_text(encoding="utf-8").strip() or "unknown"
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {marker_path(store_path)}: {exc.strerror or exc}") from exc


def write_marker(store_path: Path, store_id: str) -> None:
    marker = marker_path(store_path)
    try:
        with atomic_write(marker) as fh:
            fh.write(store_id + "\n")
    except OSError:
        pass  # the marker only guards against a lost store; failing to write it loses nothing


def missing_store_message(store_path: Path, what: str) -> str:
    """One message for a home whose store was lost: how to restore, and how to start anew."""
    backups = visible_backups(store_path)
    seen = (
        "backups here: " + ", ".join(str(b) for b in backups)
        if backups
        else f"no backups were found in {store_path.parent}"
    )
    return (
        f"the store {store_path} {what}, but this home held one (marker "
        f"{marker_path(store_path)}); nothing was created. Restore a backup with "
        f"`nsfw-tui restore BACKUP_FILE` ({seen}), or start a new, empty store on purpose "
        "with `nsfw-tui restore --empty`"
    )


def backups_list(store_path: Path) -> Path:
    """The file beside the store that lists every backup `nsfw-tui backup` wrote."""
    return store_path.with_name(store_path.name + ".backups")


def note_backup(store_path: Path, dest: Path) -> None:
    try:
        with open(backups_list(store_path), "a", encoding="utf-8") as fh:
            fh.write(f"{dest.resolve()}\n")
    except OSError:
        pass  # the list only helps find backups later; the backup itself is written


def visible_backups(store_path: Path) -> list[Path]:
    """Backups a person may want after losing the store, newest first."""
    found: set[Path] = {
        p
        for p in store_path.parent.glob(f"{store_path.name}.before-restore-*")
        if not p.name.endswith(("-wal", "-shm", "-journal"))
    }
    try:
        listed = backups_list(store_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        listed = []
    found |= {Path(line) for line in listed if line.strip()}
    existing = [p for p in found if p.is_file()]
    return sorted(existing, key=lambda p: p.stat().st_mtime, reverse=True)
