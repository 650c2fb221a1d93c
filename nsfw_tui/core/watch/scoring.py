"""The watcher's scoring thread: settled files through `scan_files`, then decision and action."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..decision import decide
from ..quarantine import quarantine_move, recover_moves
from ..scan import ScanItem, ScanOptions, scan_files
from ..scorers import Scorer
from ..store import LabelEvent, Store, path_text
from ..watch_options import WatchOptions, WatchStats
from .events import RETRYABLE, Key, _key, _Logged, _Settled
from .log import DecisionLog, Unlogged, unlogged

# The Watcher's logger, whichever of its modules logs.
log = logging.getLogger("nsfw_tui.core.watch")

# A line's "source" for a decision a label made: undo is only ever done by a person.
_LABEL_SOURCES = {"human": "human", "undo": "human", "import": "import"}
_LABELLED_BY = {"human": "a person", "import": "`nsfw-tui import`"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Scoring:
    """The scoring half of :class:`~nsfw_tui.core.watch.Watcher`, a base class of it.

    Kept apart only for the size of one file: it shares the Watcher's state, under the
    Watcher's one lock, and calls back into its candidate bookkeeping.
    """

    # Set by Watcher.__init__.
    options: WatchOptions
    root: str
    store_path: str
    scorer: Scorer
    threshold: float
    scan_options: ScanOptions
    on_decision: Callable[[dict], None] | None
    quarantine: str | None
    _lock: threading.Lock
    _settled: deque[_Settled]
    _inflight: set[str]
    _logged: dict[str, _Logged]
    _baseline: dict[str, Key]
    _gone: set[str]
    _times: deque[float]
    _stats: WatchStats
    _stop: threading.Event
    _work: threading.Event
    _running: threading.Event
    _recovered: threading.Event
    _log: DecisionLog | None

    if TYPE_CHECKING:  # defined by Watcher

        def _wanted(self, path: str) -> bool: ...
        def _hint(self, path: str, key: Key | None = None) -> None: ...
        def _retry(self, path: str, key: Key, mtime_ns: int) -> None: ...
        def _young(self, key: Key) -> bool: ...
        def _notice(self, text: str) -> None: ...

    def _score_loop(self) -> None:
        store = None
        while not self._stop.is_set():
            if not self._recovered.is_set():  # before anything new: moves, then missing lines
                try:
                    if store is None:
                        store = Store.open(self.store_path, check=False)
                    self._recover(store)
                    self._recovered.set()
                except Exception as exc:
                    log.exception("watch: recovery at start")
                    self._notice(f"watch: recovery failed ({type(exc).__name__}: {exc}); retrying")
                    self._stop.wait(1.0)
                continue
            if not self._running.is_set():
                self._running.wait(0.25)
                continue
            self._work.wait(0.25)
            if self._stop.is_set():
                break
            with self._lock:
                batch = [
                    self._settled.popleft()
                    for _ in range(min(len(self._settled), self.options.max_batch))
                ]
                if not self._settled:
                    self._work.clear()
                gone, self._gone = self._gone, set()
            try:
                if store is None:
                    store = Store.open(self.store_path, check=False)
                if gone:
                    self._forget(store, gone)
                if batch:
                    self._score(store, batch)
            except Exception as exc:
                log.exception("watch: scoring")
                self._notice(f"watch: scoring failed ({type(exc).__name__}: {exc}); "
                             "the next rescan retries")  # fmt: skip
                self._stop.wait(1.0)
        if store is not None:
            store.close()

    def _recover(self, store: Store) -> None:
        """Finish interrupted quarantine moves (W12), then log what the log lacks (W13)."""
        completed, abandoned = recover_moves(store)
        if completed or abandoned:
            self._notice(
                f"quarantine: completed {completed} and rolled back {abandoned} interrupted moves"
            )
        if self._log is None:
            return  # without a log nothing records what was printed: nothing to compare
        missing = unlogged(
            store, self._log.tail, self.root, self.scorer.id, self._wanted, self._young
        )
        for u in missing:
            if u.move is not None:
                self._tell_moved(u)
            elif u.key is not None:
                self._decide(
                    store, u.path, u.key, u.sha256, u.probability, u.error, u.label, cached=True
                )
            self._log.tail.logged.add((path_text(u.path), u.sha256))  # a retry skips it
        if missing:
            self._notice(f"log: logged {len(missing)} decisions the log lacked")
        self._log.tail.logged.clear()  # only needed at start

    def _forget(self, store: Store, paths: set[str]) -> None:
        """Deleted files leave no row behind (their images and labels stay)."""
        missing = [p for p in paths if not os.path.lexists(p)]
        with self._lock:
            for p in missing:  # a new file at this path later gets its own line
                self._logged.pop(p, None)
        if missing:
            store.forget_missing([path_text(p) for p in missing])

    def _score(self, store: Store, batch: list[_Settled]) -> None:
        by_path: dict[str, _Settled] = {}
        for s in batch:
            by_path[s.path] = s  # the newest promotion of a path wins
        paths: list[str] = []
        try:
            for path, s in by_path.items():
                key = _key(path)
                if key is None:
                    self._drop(path, gone=True)
                elif key != s.key:
                    self._drop(path)
                    self._hint(path)  # changed after it settled: settle again
                elif self._already(path, key):
                    self._drop(path)
                elif s.error is not None:
                    self._decide(store, path, key, None, None, s.error, None, cached=False)
                else:
                    paths.append(path)
            if not paths:
                return
            try:
                result = scan_files(
                    paths,
                    self.scorer,
                    store,
                    self.scan_options,
                    on_items=lambda items: self._handle(store, items, by_path),
                    should_stop=self._stop.is_set,
                )
            except Exception:
                with self._lock:
                    undecided = [p for p in paths if p in self._inflight]
                    for path in undecided:
                        self._inflight.discard(path)
                for path in undecided:  # settle again and retry, after the loop's pause
                    self._hint(path)
                raise
            with self._lock:
                self._stats.scored += result.scored
        finally:
            with self._lock:
                for path in paths:
                    self._inflight.discard(path)

    def _already(self, path: str, key: Key) -> bool:
        """Logged in this session, or present at start with catch-up off, and unchanged."""
        with self._lock:
            logged = self._logged.get(path)
            return (logged is not None and logged.key == key) or self._baseline.get(path) == key

    def _drop(self, path: str, *, gone: bool = False) -> None:
        with self._lock:
            self._inflight.discard(path)
            if gone:
                self._gone.add(path)

    def _handle(self, store: Store, items: list[ScanItem], by_path: dict[str, _Settled]) -> None:
        shas = list({i.sha256 for i in items if i.sha256})
        labels = store.current_labels(shas) if shas else {}
        for item in items:
            s = by_path[item.path]
            key = _key(item.path)
            if key is None or item.error_kind == "missing":
                self._drop(item.path, gone=True)
                continue
            if key != s.key:  # rewritten while it was being read: never log a partial file
                self._drop(item.path)
                self._hint(item.path)
                continue
            if item.error_kind in RETRYABLE and not s.final and self._young(key):
                self._retry(item.path, key, key[1])
                continue
            label = labels.get(item.sha256) if item.sha256 else None
            error = (item.error_kind, item.error or "") if item.error_kind else None
            self._decide(
                store, item.path, key, item.sha256, item.probability, error, label, item.cached
            )

    def _verdict(
        self, probability: float | None, error: tuple[str, str] | None, label: LabelEvent | None
    ) -> tuple[str, str, str]:
        """(decision, source, reason): a label outranks the model; no probability is an error."""
        decision = decide(probability, self.threshold, label and label.label).call.value
        if label is not None:
            source = _LABEL_SOURCES.get(label.source, label.source)
            return decision, source, f"labelled {label.label} by {_LABELLED_BY.get(source, source)}"
        if error is not None or probability is None:
            kind, why = error or ("error", "no probability")
            return decision, "watcher" if kind == "unsettled" else "decoder", f"{kind}: {why}"
        op = ">=" if decision == "nsfw" else "<"
        return decision, "model", f"probability {probability:.4f} {op} threshold {self.threshold:g}"

    def _decide(
        self,
        store: Store,
        path: str,
        key: Key,
        sha256: str | None,
        probability: float | None,
        error: tuple[str, str] | None,
        label: LabelEvent | None,
        cached: bool,
    ) -> None:
        decision, source, reason = self._verdict(probability, error, label)
        logged = _Logged(key, sha256, decision)
        told = False
        try:
            with self._lock:
                before = self._logged.get(path)
            if before and sha256 and (before.sha256, before.decision) == (sha256, decision):
                told = True
                return  # touched, not changed: the same content already has its line
            action, dest = "none", None
            if self.quarantine and decision != "sfw":
                action, dest = self._quarantine(store, path, sha256, reason)
            self._emit(
                path, key[0], sha256, probability, decision, action, dest, reason, source, cached
            )
            told = True
        finally:
            # Done only once told: a failure leaves the file to the next rescan.
            with self._lock:
                self._inflight.discard(path)
                if told:
                    self._logged[path] = logged

    def _tell_moved(self, u: Unlogged) -> None:
        """The line of a file whose quarantine move finished before its line was written."""
        assert u.move is not None
        decision, source, _ = self._verdict(u.probability, u.error, u.label)
        size = u.key[0] if u.key else None
        dest = u.move.dest
        self._emit(
            u.path, size, u.sha256, u.probability, decision, "quarantined", dest,
            u.move.reason or "", source, cached=True,
        )  # fmt: skip

    def _emit(
        self,
        path: str,
        size: int | None,
        sha256: str | None,
        probability: float | None,
        decision: str,
        action: str,
        dest: str | None,
        reason: str,
        source: str,
        cached: bool,
    ) -> None:
        line = {
            "time": _now_iso(),
            "path": path_text(path),
            "sha256": sha256,
            "size": size,
            "probability": None if probability is None else round(float(probability), 6),
            "decision": decision,
            "action": action,
            "dest": dest,
            "reason": reason,
            "source": source,
            "model": self.scorer.id,
            "threshold": self.threshold,
            "cached": bool(cached),
        }
        with self._lock:
            st = self._stats
            st.seen += 1
            st.nsfw += decision == "nsfw"
            st.sfw += decision == "sfw"
            st.errors += decision == "error"
            st.quarantined += action in ("quarantined", "would-quarantine")
            self._times.append(time.monotonic())
        # stdout (or the screen) first, the log last: a kill in between repeats the line on
        # stdout at the next start (at-least-once) and never loses it from the log (W13).
        if self.on_decision is not None:
            try:
                self.on_decision(line)
            except Exception:  # a broken display must not stop the log
                log.exception("watch: on_decision callback")
        if self._log is not None:
            self._log.write(line)

    def _quarantine(
        self, store: Store, path: str, sha256: str | None, reason: str
    ) -> tuple[str, str | None]:
        assert self.quarantine is not None
        target = os.path.join(self.quarantine, os.path.relpath(path, self.root))
        if self.options.dry_run:
            base, ext = os.path.splitext(target)
            n = 0
            while os.path.lexists(target):
                n += 1
                target = f"{base}-{n}{ext}"
            return "would-quarantine", path_text(target)
        try:
            moved = quarantine_move(store, path, target, sha256, reason)
        except OSError as exc:
            self._notice(f"cannot quarantine {path_text(path)}: {exc.strerror or exc}")
            return "quarantine-failed", None
        return "quarantined", path_text(moved)
