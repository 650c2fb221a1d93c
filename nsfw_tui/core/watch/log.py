"""The watch log: one fsynced JSON line per decision, and the decisions its tail lacks (W13)."""

# The store learns a decision before the log does (scan_files commits a batch, then each
# file is decided and logged), and a restarted watcher skips the files the store knows. So
# a kill between the two would lose lines for good. On start the watcher reads the log's
# tail and re-emits what the store recorded since shortly before the newest logged line
# and the tail does not hold: with --log every decision is logged exactly once.

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from ..errors import NsfwTuiError
from ..names import from_b64, path_text
from ..store import FileRow, LabelEvent, MoveRow, Store
from .scope import Key, file_key
from .settle import RETRYABLE

TAIL_BYTES = 4 * 1024 * 1024
# How far before its newest line the log is compared with the store. Undecided rows come
# from the batch being logged at the kill, which was recorded at most a store lock wait
# plus one batch's moves before that line; the margin covers slow cross-device moves too.
MARGIN_S = 600.0


@dataclass
class LogTail:
    """What the end of an existing log says: its (path, sha256) pairs and time span."""

    logged: set[tuple[str, str | None]] = field(default_factory=set)
    newest: float | None = None
    oldest: float | None = None
    whole: bool = True  # the tail is the whole file
    torn: bool = False  # the file does not end in a newline
    mtime: float | None = None  # None: there was no log yet
    size: int = 0

    def since(self) -> float | None:
        """Unix time from which the store is compared with the log; None: nothing to do."""
        if self.newest is None:
            if self.mtime is None:
                return None  # a new log: no session has written to it
            # No whole line yet: a session that opened the log was killed before its first
            # line. An empty file's mtime is its creation, before that session's decisions;
            # a torn first line was written at most a batch after its decisions.
            return self.mtime - (MARGIN_S if self.size else 1.0)
        since = self.newest - MARGIN_S
        if not self.whole and self.oldest is not None:
            # Lines before the tail are unknown: comparing there could log them twice.
            since = max(since, self.oldest)
        return since


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def exact_path(line: dict, field: str) -> str | None:
    """A line's ``path`` or ``dest`` as the file system names it: from its base64 twin
    (``path_b64``, ``dest_b64``) where the name is not UTF-8, else the text itself."""
    raw = line.get(f"{field}_b64")
    if isinstance(raw, str):
        try:
            return from_b64(raw)
        except ValueError:
            return None  # a damaged line: its text is not exact either
    text = line.get(field)
    return text if isinstance(text, str) else None


def read_tail(path: str, limit: int = TAIL_BYTES) -> LogTail:
    """Parse the last ``limit`` bytes of a log; a torn or foreign line is skipped."""
    tail = LogTail()
    try:
        # O_NONBLOCK and a type check: a FIFO given as the log must not hang the start.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise NsfwTuiError(f"the log {path_text(path)} is not a regular file")
            tail.size, tail.mtime = st.st_size, st.st_mtime
            start = max(0, tail.size - limit)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return tail
    tail.whole = start == 0
    tail.torn = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # begins mid-line
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or not isinstance(line.get("path"), str):
            continue
        when = _parse_time(line.get("time"))
        if when is None:
            continue
        tail.logged.add((exact_path(line, "path") or line["path"], line.get("sha256")))
        tail.newest = when if tail.newest is None else max(tail.newest, when)
        tail.oldest = when if tail.oldest is None else min(tail.oldest, when)
    return tail


class DecisionLog:
    """An append-only JSON-lines file; a line is on disk before ``write`` returns."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.tail = read_tail(path)
            self._fh: IO[bytes] = open(path, "ab")  # noqa: SIM115  (kept open while watching)
        except OSError as exc:
            raise NsfwTuiError(f"cannot write the log {path}: {exc.strerror or exc}") from exc
        if self.tail.torn:
            self._put(b"\n")  # a kill tore the last line: the next one starts afresh

    def _put(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, line: dict) -> None:
        text = json.dumps(line, ensure_ascii=False) + "\n"
        self._put(text.encode("utf-8", "backslashreplace"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()


@dataclass(frozen=True)
class Unlogged:
    """A decision the store holds and the log lacks, to be made (or told) again."""

    path: str
    key: Key | None
    sha256: str | None
    probability: float | None
    error: tuple[str, str] | None
    label: LabelEvent | None
    move: MoveRow | None = None  # a finished quarantine move: the file is already at its dest


def unlogged(
    store: Store,
    tail: LogTail,
    root: str,
    model_id: str,
    wanted: Callable[[str], bool],
    young: Callable[[Key], bool],
) -> list[Unlogged]:
    """The decisions recorded under ``root`` since ``tail.since()`` that the tail lacks.

    Files moved into quarantine are found through their moves (their rows followed them).
    A file that is gone or changed since its row was written is left to the rescan, like
    a young file whose decode failure may still be an upload in progress.
    """
    since = tail.since()
    if since is None:
        return []
    done = set(tail.logged)
    prefix = root.rstrip(os.sep) + os.sep
    moves = [m for m in store.moves() if m.moved_at >= since and m.src.startswith(prefix)]
    rows = store.files_seen_since(root, since)
    shas = list(({m.sha256 for m in moves} | {r.sha256 for r in rows}) - {None})
    probs = store.predictions(model_id, shas) if shas else {}
    labels = store.current_labels(shas) if shas else {}
    # A moved file's row followed it to its dest (and back, if it was released since).
    kept = store.files([p for m in moves for p in (m.dest, m.released_to) if p])
    out: list[Unlogged] = []
    for m in moves:
        sha = m.sha256
        if (m.src, sha) in done:
            continue
        done.add((m.src, sha))
        row: FileRow | None = kept.get(m.dest) or kept.get(m.released_to or "")
        error = (row.error_kind, row.error or "") if row and row.error_kind else None
        if error is None and sha not in probs and sha not in labels:
            kind, _, why = (m.reason or "").partition(": ")
            error = (kind, why)  # an error decision; its reason was kept with the move
        key = (row.size, row.mtime_ns) if row else None
        out.append(Unlogged(m.src, key, sha, probs.get(sha), error, labels.get(sha), m))
    for r in rows:
        path, sha, kind = r.path, r.sha256, r.error_kind
        key = (r.size, r.mtime_ns)
        if (path, sha) in done or not wanted(path) or file_key(path) != key or kind == "missing":
            continue
        if kind in RETRYABLE and young(key):
            continue  # never decided: retried while young
        if kind is None and sha not in probs:
            continue  # scored by another model: the rescan scores it with this one
        done.add((path, sha))
        error = (kind, r.error or "") if kind else None
        out.append(Unlogged(path, key, sha, probs.get(sha), error, labels.get(sha)))
    return out
