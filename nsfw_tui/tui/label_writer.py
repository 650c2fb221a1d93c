"""Writes labels to the store in order, on its own thread and connection, retrying when busy."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from ..core.errors import ImageError, NsfwTuiError, StoreBusyError, plain_line
from ..core.images import hash_file
from ..core.store import Store
from .messages import LabelsFailed, LabelsSaved, StoreBusy, UndoEmpty

# Each attempt waits this long for the lock, so the person hears about a busy store quickly;
# SQLite's busy handler polls within it, so a label is saved well within 2 s of the lock's
# release. A label is never dropped for a busy store: it waits, however long (S3).
ATTEMPT_TIMEOUT_S = 1.0


@dataclass
class SetLabels:
    targets: list[tuple[str, str | None]]  # (path, sha256 if known)
    label: str | None


class UndoLast:
    """Undo the newest label change this writer made that is not undone yet."""


class LabelWriter:
    """The one writer of labels for the app: a queue, a thread, a connection of its own."""

    def __init__(self, store_path: Path, post: Callable[[Message], object]) -> None:
        self.store_path = store_path
        self.post = post
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="label-writer", daemon=True)
        # Batches this session wrote, newest last: owned by the writer thread alone, so an
        # undo always meets the changes queued before it.
        self.batches: list[str] = []
        self._count_lock = threading.Lock()
        self._waiting = 0  # labels submitted and not yet saved (or failed)
        self.busy = False  # the operation in hand is waiting for another process's lock
        self._abandon = threading.Event()

    @property
    def waiting(self) -> int:
        """How many labels are queued and not yet in the store."""
        with self._count_lock:
            return self._waiting

    def _count(self, op: SetLabels | UndoLast, sign: int) -> None:
        n = len(op.targets) if isinstance(op, SetLabels) else 1
        with self._count_lock:
            self._waiting += sign * n

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0, *, abandon: bool = False) -> None:
        """Finish what is queued (labels are a person's work), then stop.

        ``abandon`` is for a person who chose to quit with labels still waiting for a busy
        store: the writer stops retrying instead of holding the exit.
        """
        if abandon:
            self._abandon.set()
        self.queue.put(None)
        self.thread.join(timeout)

    def submit(self, op: SetLabels | UndoLast) -> None:
        self._count(op, +1)
        self.queue.put(op)

    def _run(self) -> None:
        store: Store | None = None
        while True:
            op = self.queue.get()
            if op is None:
                break
            try:
                store = self._retrying(store, op)
            except NsfwTuiError as exc:
                self._count(op, -1)
                self.post(LabelsFailed(self._paths(op), str(exc)))
            except Exception as exc:  # the writer must outlive any one bad operation
                self._count(op, -1)
                self.post(LabelsFailed(self._paths(op), plain_line(exc)))
        if store is not None:
            store.close()

    @staticmethod
    def _paths(op: SetLabels | UndoLast) -> list[str]:
        return [p for p, _ in op.targets] if isinstance(op, SetLabels) else []

    def _retrying(self, store: Store | None, op: SetLabels | UndoLast) -> Store | None:
        """Apply ``op``, waiting out a busy store for as long as it takes; returns the store."""
        started = time.monotonic()
        told = 0.0
        try:
            while True:
                try:
                    if store is None:
                        store = Store.open(self.store_path, timeout=ATTEMPT_TIMEOUT_S)
                    self._apply(store, op)
                    return store
                except StoreBusyError:
                    if self._abandon.is_set():
                        raise
                    self.busy = True
                    waited = time.monotonic() - started
                    if told == 0.0 or waited - told >= 5.0:  # now and then, not every attempt
                        self.post(StoreBusy(waited, self.waiting))
                        told = waited or 1e-9
        finally:
            self.busy = False

    def _apply(self, store: Store, op: SetLabels | UndoLast) -> None:
        if isinstance(op, UndoLast):
            if not self.batches:
                self._count(op, -1)
                self.post(UndoEmpty())
                return
            batch = self.batches[-1]
            shas = store.batch_images(batch)
            store.undo_batch(batch)
            self.batches.pop()
            current = store.current_labels(shas)
            labels = {s: (current[s].label if s in current else None) for s in shas}
            self._count(op, -1)
            self.busy = False
            self.post(LabelsSaved(labels, None, undo=True, hashed={}))
            return
        hashed: dict[str, str] = {}  # path -> sha256, so the UI learns hashes it lacked
        targets: list[tuple[str, str | None]] = []
        for path, sha in op.targets:
            if sha is None:
                try:
                    sha, _ = hash_file(path)
                except ImageError as exc:
                    self.post(LabelsFailed([path], f"cannot label {path}: {exc.reason}"))
                    continue
            hashed[path] = sha
            targets.append((path, sha))
        with self._count_lock:
            self._waiting -= len(op.targets) - len(targets)
        op.targets = targets  # a retry after a busy store neither hashes nor reports again
        shas = list(dict.fromkeys(hashed.values()))
        batch = store.set_labels(shas, op.label, source="human")
        if batch is not None:
            self.batches.append(batch)
        self._count(op, -1)
        self.busy = False
        self.post(LabelsSaved({s: op.label for s in shas}, batch, hashed=hashed))
