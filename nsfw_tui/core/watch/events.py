"""The watcher's event handlers (events become candidates) and its records of each file."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

if TYPE_CHECKING:
    from .watcher import Watcher

# Names that a downloader or uploader writes before its final rename.
TEMPORARY_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", "~")
# Decode failures a file still being written also shows: retried while the file is young.
RETRYABLE = frozenset({"empty", "truncated", "unidentified"})
_EVENTS = [
    FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent, FileMovedEvent,
    FileDeletedEvent, DirCreatedEvent, DirMovedEvent,
]  # fmt: skip

Key = tuple[int, int]  # (size, mtime_ns)


@dataclass
class _Candidate:
    key: Key | None
    since: float  # monotonic time this key was first seen
    first_seen: float
    check_at: float
    final_at: float | None = None  # retry mode: when a decode failure becomes final


@dataclass(frozen=True)
class _Settled:
    path: str
    key: Key
    final: bool = False  # a retryable decode failure now counts
    error: tuple[str, str] | None = None  # decided without decoding (never settled)


@dataclass
class _Logged:
    key: Key
    sha256: str | None
    decision: str


def is_temporary(name: str) -> bool:
    """Dot-files and partial-download names: they wait for their final rename."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def _key(path: str) -> Key | None:
    """(size, mtime_ns) of a regular file; None when it is gone or not a file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


class _Handler(FileSystemEventHandler):
    """Turns events into candidates; never decides anything."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        w = self.watcher
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if isinstance(event, DirMovedEvent | DirCreatedEvent):
            # A folder moved in brings files that produce no events of their own.
            w._add_tree(dest or src)
        elif isinstance(event, FileMovedEvent):
            w._discard(src, gone=True)
            w._hint(dest)
        elif isinstance(event, FileDeletedEvent):
            w._discard(src, gone=True)
        else:
            w._hint(src)


class _OverflowHook(logging.Handler):
    """watchdog only logs an inotify overflow; this turns the warning into a rescan."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lower()
        if "overflow" in message and "reconcil" not in message:
            self.watcher._on_overflow()
