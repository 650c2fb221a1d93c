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
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from ..decision import Call, decide
from ..errors import NsfwTuiError
from ..images import is_image_name
from ..quarantine import move_no_overwrite, quarantine_folder, release
from ..scan import CONTENT_ERRORS, ScanOptions, walk_images
from ..scorers import Scorer
from ..store import Store, path_text
from ..watch_options import WatchOptions, WatchStats
from .events import (
    _EVENTS,
    RETRYABLE,
    TEMPORARY_SUFFIXES,
    Key,
    _Candidate,
    _Handler,
    _key,
    _Logged,
    _OverflowHook,
    _Settled,
    is_temporary,
)
from .log import DecisionLog
from .scoring import _Scoring

log = logging.getLogger(__name__)


class Watcher(_Scoring):
    """Watches ``root`` and logs one decision per settled file (and per new content).

    Threads: the watchdog observer (events -> candidates), a settle thread (promotes
    candidates, rescans, supervises the observer) and a scoring thread (``scan_files`` on
    its own store connection, then the decision, the quarantine move and the log line).
    ``on_decision`` and ``on_notice`` are called from those threads. The scoring thread's
    methods are in :class:`~nsfw_tui.core.watch_scoring._Scoring`.
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
        self._recovered = threading.Event()  # interrupted moves and missing lines dealt with
        self._handler = _Handler(self)
        self._hook = _OverflowHook(self)
        self._observer = None
        self._threads: list[threading.Thread] = []
        self._log: DecisionLog | None = None
        self._tick = max(0.02, min(0.1, self.options.settle_s / 5))

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the observer and the threads (once per Watcher); the catch-up runs in them."""
        if not os.path.isdir(self.root):
            raise NsfwTuiError(f"folder not found: {path_text(self.root)}")
        if self.log_path:
            # Its tail is read now; the scoring thread logs what it lacks before anything new.
            self._log = DecisionLog(self.log_path)
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
            if self._log is not None:
                self._log.close()
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
        if self._log is not None:
            self._log.close()
            self._log = None

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
        if not self._recovered.is_set():
            return False
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
        return decide(prob, self.threshold, label).call is Call.SFW  # NSFW, errors still move

    # -- scoring thread ------------------------------------------------------------------

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
