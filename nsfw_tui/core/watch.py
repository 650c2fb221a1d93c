"""Watch a folder: events as hints, a settle gate, rescans, one scoring thread, quarantine."""

# The design follows RELIABILITY.md section 3. watchdog events only add candidates: inotify
# drops events on overflow and a closed event is not "finished" (renames never close, slow
# uploaders close many times). A candidate is scored once its (size, mtime_ns) has stayed
# unchanged for `settle_s`; a full rescan at start, every `rescan_interval_s`, on an
# overflow warning and after an observer restart closes any gap the events left. Scoring
# goes through the one pipeline (`scan_files`), whose cache makes every step idempotent.

from __future__ import annotations

import contextlib
import fnmatch
import heapq
import itertools
import json
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

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

from .errors import NsfwTuiError
from .images import is_image_name
from .quarantine import move_no_overwrite, quarantine_folder, release
from .report import decide
from .scan import CONTENT_ERRORS, ScanItem, ScanOptions, scan_files, walk_images
from .scorers import Scorer
from .store import Store, path_text

log = logging.getLogger(__name__)

# Names that a downloader or uploader writes before its final rename.
TEMPORARY_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", "~")
# Decode failures a file still being written also shows: retried while the file is young.
RETRYABLE = frozenset({"empty", "truncated", "unidentified"})
_EVENTS = [
    FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent, FileMovedEvent,
    FileDeletedEvent, DirCreatedEvent, DirMovedEvent,
]  # fmt: skip
_DECISIONS = {1: "nsfw", 0: "sfw", None: "error"}

Key = tuple[int, int]  # (size, mtime_ns)


@dataclass
class WatchOptions:
    settle_s: float = 2.0
    """Seconds a file's size and mtime must stay unchanged before it is scored."""
    rescan_interval_s: float = 300.0
    """Full rescan period, to catch events the file system never delivered."""
    quarantine: str | None = None
    """Folder NSFW and unreadable files are moved to (None: only log)."""
    dry_run: bool = False
    """Log the quarantine action without moving anything."""
    polling: bool = False
    """Poll the file system (network and bind mounts) instead of inotify."""
    catch_up: bool = True
    """Score the files already in the folder that the store has not scored."""
    never_settles_timeout_s: float = 120.0
    """A file still changing, or still failing to decode, after this long is an error."""
    poll_interval_s: float = 1.0
    """Seconds between snapshots of the polling observer."""
    supervise_interval_s: float = 1.0
    """How often the observer's threads are checked (and restarted when dead)."""
    max_batch: int = 256
    """Most settled files handed to one `scan_files` call."""
    pattern: str | None = None
    """Glob the file names must match; None: every image type."""

    @classmethod
    def from_config(cls, watch, scan=None) -> WatchOptions:
        return cls(
            settle_s=float(watch.settle_s),
            rescan_interval_s=float(watch.rescan_interval_s),
            quarantine=str(watch.quarantine) if watch.quarantine else None,
            dry_run=bool(watch.dry_run),
            polling=bool(watch.polling),
            catch_up=bool(watch.catch_up),
            never_settles_timeout_s=float(watch.never_settles_timeout_s),
            pattern=(scan.pattern or None) if scan is not None else None,
        )

    def check(self) -> None:
        for name in ("settle_s", "rescan_interval_s", "never_settles_timeout_s", "poll_interval_s"):
            if not getattr(self, name) > 0:
                raise NsfwTuiError(f"watch.{name} must be above 0, got {getattr(self, name)}")
        if self.never_settles_timeout_s < self.settle_s:
            raise NsfwTuiError("watch.never_settles_timeout_s must be at least watch.settle_s")


@dataclass
class WatchStats:
    seen: int = 0  # decisions logged
    nsfw: int = 0
    sfw: int = 0
    errors: int = 0
    quarantined: int = 0  # moved, or (dry run) would have been
    scored: int = 0  # model inferences
    pending: int = 0  # candidates settling plus settled files waiting for the model
    rescans: int = 0
    restarts: int = 0
    overflows: int = 0
    paused: bool = False
    rate: float = 0.0  # decisions per second over the last few seconds


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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class Watcher:
    """Watches ``root`` and logs one decision per settled file (and per new content).

    Threads: the watchdog observer (events -> candidates), a settle thread (promotes
    candidates, rescans, supervises the observer) and a scoring thread (``scan_files`` on
    its own store connection, then the decision, the quarantine move and the log line).
    ``on_decision`` and ``on_notice`` are called from those threads.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        store_path: str | os.PathLike,
        scorer: Scorer,
        *,
        threshold: float,
        options: WatchOptions | None = None,
        scan_options: ScanOptions | None = None,
        on_decision: Callable[[dict], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> None:
        self.options = options or WatchOptions()
        self.options.check()
        self.root = os.path.abspath(os.fspath(root))
        self.store_path = os.fspath(store_path)
        self.scorer = scorer
        self.threshold = float(threshold)
        self.scan_options = scan_options or ScanOptions()
        self.on_decision = on_decision
        self.on_notice = on_notice
        self.log_path = os.fspath(log_path) if log_path else None
        self.quarantine = quarantine_folder(self.root, self.options.quarantine)
        self._acts = bool(self.quarantine) and not self.options.dry_run

        self._lock = threading.Lock()
        self._candidates: dict[str, _Candidate] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._settled: deque[_Settled] = deque()
        self._inflight: set[str] = set()
        self._logged: dict[str, _Logged] = {}
        self._baseline: dict[str, Key] = {}  # files present at start with catch-up off
        self._gone: set[str] = set()
        self._trees: list[str] = []
        self._rescan_reason: str | None = None
        self._times: deque[float] = deque()
        self._stats = WatchStats()

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._work = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._handler = _Handler(self)
        self._hook = _OverflowHook(self)
        self._observer = None
        self._threads: list[threading.Thread] = []
        self._log_file = None
        self._tick = max(0.02, min(0.1, self.options.settle_s / 5))

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the observer and the threads (once per Watcher); the catch-up runs in them."""
        if not os.path.isdir(self.root):
            raise NsfwTuiError(f"folder not found: {path_text(self.root)}")
        if self.log_path:
            try:
                self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise NsfwTuiError(f"cannot write the log {self.log_path}: {exc}") from exc
        wd_log = logging.getLogger("watchdog")
        if wd_log.getEffectiveLevel() > logging.WARNING:
            wd_log.setLevel(logging.WARNING)
        wd_log.addHandler(self._hook)
        if not self.options.catch_up:
            # Before the observer starts: a file that lands after start() is never baseline.
            self._baseline = self._walk()
        with self._lock:
            self._rescan_reason = "catch-up" if self.options.catch_up else "start"
        try:
            self._start_observer()
        except BaseException:
            wd_log.removeHandler(self._hook)
            if self._log_file is not None:
                self._log_file.close()
            raise
        self._threads = [
            threading.Thread(target=self._settle_loop, name="watch-settle", daemon=True),
            threading.Thread(target=self._score_loop, name="watch-score", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop promptly: a batch being scored ends after its current file; whatever is
        left unscored is not in the store, so the next start's catch-up finds it."""
        self._stop.set()
        self._running.set()
        self._wake.set()
        self._work.set()
        for t in self._threads:
            t.join(timeout)
        # after the settle thread: it may have restarted the observer meanwhile
        self._stop_observer(self._observer)
        logging.getLogger("watchdog").removeHandler(self._hook)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def pause(self) -> None:
        """Stop handing files to the model; candidates keep settling meanwhile."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def request_rescan(self, reason: str = "requested") -> None:
        with self._lock:
            self._rescan_reason = self._rescan_reason or reason
        self._wake.set()

    def stats(self) -> WatchStats:
        with self._lock:
            s = WatchStats(**vars(self._stats))
            s.pending = len(self._candidates) + len(self._settled) + len(self._inflight)
            now = time.monotonic()
            while self._times and self._times[0] < now - 10:
                self._times.popleft()
            if self._times:
                span = max(1.0, now - self._times[0])
                s.rate = len(self._times) / span
        s.paused = self.paused
        return s

    def idle(self) -> bool:
        """Nothing settling, waiting or being scored (tests and benchmarks wait on this)."""
        with self._lock:
            return not (self._candidates or self._settled or self._inflight or self._trees)

    # -- observer ------------------------------------------------------------------------

    def _start_observer(self) -> None:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        polling = self.options.polling
        while True:
            obs = PollingObserver(timeout=self.options.poll_interval_s) if polling else Observer()
            try:
                obs.schedule(self._handler, self.root, recursive=True, event_filter=_EVENTS)
                obs.start()
            except OSError as exc:
                self._stop_observer(obs)
                if isinstance(exc, FileNotFoundError) or polling:
                    raise NsfwTuiError(f"cannot watch {path_text(self.root)}: {exc}") from exc
                # inotify instance or watch limit: polling still sees every file
                self._notice(f"native events unavailable ({exc}); polling instead")
                polling = True
                continue
            break
        self._observer = obs

    @staticmethod
    def _stop_observer(obs) -> None:
        if obs is None:
            return
        with contextlib.suppress(Exception):
            obs.stop()
        with contextlib.suppress(Exception):
            obs.join(2)

    def _observer_alive(self) -> bool:
        obs = self._observer
        if obs is None or not obs.is_alive():
            return False
        emitters = obs.emitters
        return bool(emitters) and all(e.is_alive() for e in emitters)

    def _supervise(self) -> None:
        if self._stop.is_set() or self._observer_alive():
            return
        self._stop_observer(self._observer)
        try:
            self._start_observer()
        except NsfwTuiError as exc:
            self._notice(f"the observer died and cannot restart: {exc}")
            return
        with self._lock:
            self._stats.restarts += 1
            self._rescan_reason = "observer restarted"
        self._notice("the file observer stopped; restarted it and rescanning")

    def _on_overflow(self) -> None:
        with self._lock:
            self._stats.overflows += 1
            self._rescan_reason = "overflow"
        self._wake.set()

    # -- candidates (observer thread and settle thread) ------------------------------------

    def _wanted(self, path: str) -> bool:
        q = self.quarantine
        if q and (path == q or path.startswith(q + os.sep)):
            return False
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return False
        parts = rel.split(os.sep)
        if any(p.startswith(".") for p in parts[:-1]) or is_temporary(parts[-1]):
            return False
        pattern = self.options.pattern
        if pattern:
            return fnmatch.fnmatch(parts[-1].lower(), pattern.lower())
        return is_image_name(parts[-1])

    def _schedule(self, path: str, c: _Candidate, at: float) -> None:
        c.check_at = at
        heapq.heappush(self._heap, (at, next(self._seq), path))

    def _hint(self, path: str, key: Key | None = None) -> None:
        if not path or not self._wanted(path):
            return
        now = time.monotonic()
        with self._lock:
            c = self._candidates.get(path)
            if c is None:
                c = _Candidate(key, now, now, now)
                self._candidates[path] = c
                self._schedule(path, c, now + self.options.settle_s if key else now)
            elif key is None:
                self._schedule(path, c, now)  # something happened: look again now
        self._wake.set()

    def _discard(self, path: str, *, gone: bool = False) -> None:
        with self._lock:
            self._candidates.pop(path, None)
            if gone:
                self._gone.add(path)
        if gone:
            self._work.set()

    def _add_tree(self, folder: str) -> None:
        with self._lock:
            self._trees.append(folder)
        self._wake.set()

    def _walk_trees(self) -> None:
        with self._lock:
            trees, self._trees = self._trees, []
        for folder in trees:
            if os.path.isdir(folder) and (folder == self.root or self._wanted_dir(folder)):
                for path in walk_images(folder, pattern=self.options.pattern):
                    self._hint(path)

    def _wanted_dir(self, folder: str) -> bool:
        q = self.quarantine
        if q and (folder == q or folder.startswith(q + os.sep)):
            return False
        rel = os.path.relpath(folder, self.root)
        return not rel.startswith("..") and not any(p.startswith(".") for p in rel.split(os.sep))

    def _settle(self, path: str, key: Key, **kw) -> None:
        # under self._lock
        self._candidates.pop(path, None)
        self._inflight.add(path)
        self._settled.append(_Settled(path, key, **kw))
        self._work.set()

    def _promote_due(self) -> None:
        now = time.monotonic()
        due: list[tuple[str, _Candidate]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                at, _, path = heapq.heappop(self._heap)
                c = self._candidates.get(path)
                if c is not None and c.check_at == at:  # else a stale entry
                    due.append((path, c))
        settle, limit = self.options.settle_s, self.options.never_settles_timeout_s
        for path, c in due:
            key = _key(path)
            with self._lock:
                if self._candidates.get(path) is not c:
                    continue
                if key is None:
                    del self._candidates[path]  # gone, or not a regular file
                elif key != c.key:
                    c.key, c.since, c.final_at = key, now, None
                    if now - c.first_seen >= limit:
                        reason = f"still changing after {limit:g} s"
                        self._settle(path, key, error=("unsettled", reason))
                    else:
                        self._schedule(path, c, now + settle)
                elif c.final_at is not None:
                    if now >= c.final_at:
                        self._settle(path, key, final=True)
                    else:
                        self._schedule(path, c, c.final_at)
                elif now - c.since >= settle:
                    self._settle(path, key)
                else:
                    self._schedule(path, c, c.since + settle)

    def _retry(self, path: str, key: Key, mtime_ns: int) -> None:
        """A young file that failed to decode: wait for it to change, or for the timeout."""
        now = time.monotonic()
        age = time.time() - mtime_ns / 1e9
        final_at = now + max(0.0, self.options.never_settles_timeout_s - age)
        with self._lock:
            self._inflight.discard(path)
            c = _Candidate(key, now, now, now, final_at)
            self._candidates[path] = c
            self._schedule(path, c, min(final_at, now + self.options.settle_s))
        self._wake.set()

    def _young(self, key: Key) -> bool:
        return time.time() - key[1] / 1e9 < self.options.never_settles_timeout_s

    # -- settle thread -------------------------------------------------------------------

    def _settle_loop(self) -> None:
        store = None
        next_rescan = time.monotonic() + self.options.rescan_interval_s
        next_check = time.monotonic() + self.options.supervise_interval_s
        while not self._stop.is_set():
            try:
                if store is None:
                    store = Store.open(self.store_path, check=False)
                now = time.monotonic()
                if now >= next_check:
                    self._supervise()
                    next_check = now + self.options.supervise_interval_s
                with self._lock:
                    reason, self._rescan_reason = self._rescan_reason, None
                if reason is None and now >= next_rescan:
                    reason = "periodic"
                if reason is not None:
                    self._rescan(store, reason)
                    next_rescan = time.monotonic() + self.options.rescan_interval_s
                self._walk_trees()
                self._promote_due()
            except Exception as exc:  # a bad moment (busy store, odd file) must not end the watch
                log.exception("watch: settle loop")
                self._notice(f"watch: {type(exc).__name__}: {exc}")
                self._stop.wait(1.0)
            self._wake.wait(self._tick)
            self._wake.clear()
        if store is not None:
            store.close()

    def _walk(self, errors: list[tuple[str, str]] | None = None) -> dict[str, Key]:
        found: dict[str, Key] = {}
        for path in walk_images(self.root, pattern=self.options.pattern, errors=errors):
            if self._wanted(path) and (key := _key(path)) is not None:
                found[path] = key
        return found

    def _rescan(self, store: Store, reason: str) -> None:
        started = time.monotonic()
        errors: list[tuple[str, str]] = []
        found = self._walk(errors)
        with self._lock:
            rest = [
                p for p, key in found.items()
                if p not in self._candidates and p not in self._inflight
                and (p not in self._logged or self._logged[p].key != key)
                and self._baseline.get(p) != key
            ]  # fmt: skip
        known = store.files([path_text(p) for p in rest])
        shas = list({row.sha256 for row in known.values() if row.sha256})
        probs = store.predictions(self.scorer.id, shas) if shas else {}
        labels = store.current_labels(shas) if (shas and self._acts) else {}
        new = 0
        for p in rest:
            row = known.get(path_text(p))
            key = found[p]
            unchanged = row is not None and (row.size, row.mtime_ns) == key
            if unchanged and self._done(row, probs, labels):
                continue
            self._hint(p, key)
            new += 1
        with self._lock:
            self._stats.rescans += 1
        elapsed = time.monotonic() - started
        if reason not in ("catch-up", "start") or new:
            self._notice(f"rescan ({reason}): {len(found)} files, {new} to score, {elapsed:.2f} s")
        for where, why in errors:
            self._notice(f"cannot read {where}: {why}")

    def _done(self, row, probs: dict[str, float], labels: dict) -> bool:
        """Whether a file the store knows, unchanged, needs nothing more from the watcher."""
        if row.error_kind is None:
            if row.sha256 not in probs:
                return False  # not scored by this model
            prob: float | None = probs[row.sha256]
        elif row.error_kind in CONTENT_ERRORS:
            if row.error_kind in RETRYABLE and self._young((row.size, row.mtime_ns)):
                return False
            prob = None
        else:
            return False  # timeout, crash, unreadable: worth another try
        if not self._acts:
            return True
        label = labels[row.sha256].label if row.sha256 in labels else None
        return decide(prob, self.threshold, label) == 0  # NSFW and errors still need moving

    # -- scoring thread ------------------------------------------------------------------

    def _score_loop(self) -> None:
        store = None
        while not self._stop.is_set():
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
            label = labels[item.sha256].label if item.sha256 in labels else None
            error = (item.error_kind, item.error or "") if item.error_kind else None
            self._decide(
                store, item.path, key, item.sha256, item.probability, error, label, item.cached
            )

    def _decide(
        self,
        store: Store,
        path: str,
        key: Key,
        sha256: str | None,
        probability: float | None,
        error: tuple[str, str] | None,
        label: str | None,
        cached: bool,
    ) -> None:
        decision = _DECISIONS[decide(probability, self.threshold, label)]
        with self._lock:
            self._inflight.discard(path)
            before = self._logged.get(path)
            self._logged[path] = _Logged(key, sha256, decision)
        if before and sha256 and (before.sha256, before.decision) == (sha256, decision):
            return  # touched, not changed: the same content already has its line
        if label is not None:
            source, reason = "human", f"labelled {label} by a person"
        elif error is not None:
            source = "watcher" if error[0] == "unsettled" else "decoder"
            reason = f"{error[0]}: {error[1]}"
        else:
            source = "model"
            op = ">=" if decision == "nsfw" else "<"
            reason = f"probability {probability:.4f} {op} threshold {self.threshold:g}"
        action, dest = "none", None
        if self.quarantine and decision != "sfw":
            action, dest = self._quarantine(store, path, sha256, reason)
        line = {
            "time": _now_iso(),
            "path": path_text(path),
            "sha256": sha256,
            "size": key[0],
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
        if self._log_file is not None:
            self._log_file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._log_file.flush()
        if self.on_decision is not None:
            try:
                self.on_decision(line)
            except Exception:  # a broken display must not stop the log
                log.exception("watch: on_decision callback")

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
            moved = move_no_overwrite(path, target)
        except OSError as exc:
            self._notice(f"cannot quarantine {path_text(path)}: {exc.strerror or exc}")
            return "quarantine-failed", None
        store.record_move(path_text(path), path_text(moved), sha256, reason)
        return "quarantined", path_text(moved)

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(text)
            except Exception:
                log.exception("watch: on_notice callback")
        else:
            log.info("%s", text)


__all__ = [
    "RETRYABLE",
    "TEMPORARY_SUFFIXES",
    "WatchOptions",
    "WatchStats",
    "Watcher",
    "is_temporary",
    "move_no_overwrite",
    "release",
]
