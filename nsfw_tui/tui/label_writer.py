"""Writes labels to the store in order, on its own thread and connection, retrying when busy."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from ..core.errors import ImageError, NsfwTuiError, StoreBusyError
from ..core.images import hash_file
from ..core.store import Store
from .messages import LabelsFailed, LabelsSaved, StoreBusy, UndoEmpty

# Each attempt waits this long for the lock, so the person hears about a busy store quickly.
ATTEMPT_TIMEOUT_S = 1.0
GIVE_UP_AFTER_S = 300.0


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

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (labels are a person's work), then stop."""
        self.queue.put(None)
        self.thread.join(timeout)

    def submit(self, op: SetLabels | UndoLast) -> None:
        self.queue.put(op)

    def _run(self) -> None:
        store: Store | None = None
        while True:
            op = self.queue.get()
            if op is None:
                break
            try:
                if store is None:
                    store = Store.open(self.store_path, timeout=ATTEMPT_TIMEOUT_S)
                self._retrying(store, op)
            except NsfwTuiError as exc:
                self.post(LabelsFailed(self._paths(op), str(exc)))
            except Exception as exc:  # the writer must outlive any one bad operation
                self.post(LabelsFailed(self._paths(op), f"{type(exc).__name__}: {exc}"))
        if store is not None:
            store.close()

    @staticmethod
    def _paths(op: SetLabels | UndoLast) -> list[str]:
        return [p for p, _ in op.targets] if isinstance(op, SetLabels) else []

    def _retrying(self, store: Store, op: SetLabels | UndoLast) -> None:
        started = time.monotonic()
        told = False
        while True:
            try:
                self._apply(store, op)
                return
            except StoreBusyError:
                waited = time.monotonic() - started
                if waited > GIVE_UP_AFTER_S:
                    raise
                if not told:
                    self.post(StoreBusy(waited))
                    told = True

    def _apply(self, store: Store, op: SetLabels | UndoLast) -> None:
        if isinstance(op, UndoLast):
            if not self.batches:
                self.post(UndoEmpty())
                return
            batch = self.batches[-1]
            shas = store.batch_images(batch)
            store.undo_batch(batch)
            self.batches.pop()
            current = store.current_labels(shas)
            labels = {s: (current[s].label if s in current else None) for s in shas}
            self.post(LabelsSaved(labels, None, undo=True, hashed={}))
            return
        hashed: dict[str, str] = {}  # path -> sha256, so the UI learns hashes it lacked
        for path, sha in op.targets:
            if sha is None:
                try:
                    sha, _ = hash_file(path)
                except ImageError as exc:
                    self.post(LabelsFailed([path], f"cannot label {path}: {exc.reason}"))
                    continue
            hashed[path] = sha
        shas = list(dict.fromkeys(hashed.values()))
        batch = store.set_labels(shas, op.label, source="human")
        if batch is not None:
            self.batches.append(batch)
        self.post(LabelsSaved({s: op.label for s in shas}, batch, hashed=hashed))
