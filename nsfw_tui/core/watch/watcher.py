"""The Watcher: composes the watch's parts and owns its threads (settle and scoring)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ..errors import NsfwTuiError
from ..quarantine import quarantine_folder
from ..scan import ScanOptions
from ..scorers import Scorer
from ..store import Store, path_text
from ..watch_options import WatchOptions, WatchStats
from .clock import Clock, SystemClock
from .coverage import Coverage, Refused, native_observer
from .decide import Decider, Ledger, Rules, Tally
from .log import DecisionLog
from .observer import Handler, Supervisor
from .rescan import Rescans
from .scope import Key, Scope, entry_key
from .scoring import Scoring
from .settle import SettleGate

logger = logging.getLogger(__name__)


class Watcher:
    """Watches ``root`` and logs one decision per settled file (and per new content).

    Threads: the watchdog observer (events -> hints for the settle gate), a settle thread
    (promotes candidates, rescans, supervises the observer) and a scoring thread (recovery
    at start, then ``scan_files`` on its own store connection, the decision, the quarantine
    move and the line). ``on_decision`` and ``on_notice`` are called from those threads.

    Where native events do not cover the tree (a watch refused at the inotify limit, a probe
    file whose event never came, a network or FUSE mount), the whole watch polls from then
    on. Polling only
    the uncovered folders would take one watchdog polling thread per uncovered subtree, and
    past the limit those are scattered all over the tree (watches are added in walk order).
    ``observer_factory`` makes the native observer from the refused-watch callback (tests
    pass one that loses events); by default `coverage.native_observer`.
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
        clock: Clock | None = None,
        observer_factory: Callable[[Refused], Any] | None = None,
    ) -> None:
        self.options = opts = options or WatchOptions()
        opts.check()
        self.root = os.path.abspath(os.fspath(root))
        self.store_path = os.fspath(store_path)
        self.scorer = scorer
        self.threshold = float(threshold)
        self.on_notice = on_notice
        self.log_path = os.fspath(log_path) if log_path else None
        self.quarantine = quarantine_folder(self.root, opts.quarantine)
        self.clock = clock or SystemClock()

        self._stop = threading.Event()
        self._wake = threading.Event()  # the settle thread: something to look at
        self._work = threading.Event()  # the scoring thread: something to score or forget
        self._running = threading.Event()
        self._running.set()
        self._recovered = threading.Event()  # interrupted moves and missing lines dealt with
        self._threads: list[threading.Thread] = []
        self._tick = max(0.02, min(0.1, opts.settle_s / 5))

        self.scope = Scope(self.root, self.quarantine, opts.pattern)
        # Keyed by entry_key: a FIFO or a folder with an image's name settles like a file
        # and is decided as an error by the scan's own check, never opened (N2).
        self.gate = SettleGate(
            settle_s=opts.settle_s,
            never_settles_s=opts.never_settles_timeout_s,
            grace_s=opts.undecodable_grace_s,
            clock=self.clock,
            key_of=entry_key,
        )
        self.ledger = Ledger()
        self.tally = Tally(self.clock)
        rules = Rules(
            model=scorer.id,
            threshold=self.threshold,
            root=self.root,
            quarantine=self.quarantine,
            dry_run=opts.dry_run,
        )
        self.decider = Decider(
            rules,
            ledger=self.ledger,
            tally=self.tally,
            clock=self.clock,
            on_decision=on_decision,
            notice=self._notice,
        )
        self.scoring = Scoring(
            scorer,
            scan_options or ScanOptions(),
            scope=self.scope,
            gate=self.gate,
            ledger=self.ledger,
            decider=self.decider,
            tally=self.tally,
            wake=self._wake.set,
            should_stop=self._stop.is_set,
            notice=self._notice,
        )
        self.rescans = Rescans(
            interval_s=opts.rescan_interval_s,
            scope=self.scope,
            gate=self.gate,
            ledger=self.ledger,
            rules=rules,
            tally=self.tally,
            clock=self.clock,
            hint=self._hint,
            notice=self._notice,
        )
        self.coverage = Coverage(
            self.root,
            clock=self.clock,
            wait_s=opts.probe_wait_s,
            notice=self._notice,
            wake=self._wake.set,
        )
        # Tests reach the handler and the live observer to lose events and kill it.
        self._handler = Handler(hint=self._hint, gone=self._gone, tree=self._add_tree)
        self.supervisor = Supervisor(
            self.root,
            self._handler,
            native=lambda: (observer_factory or native_observer)(self.coverage.refused),
            polling=opts.polling,
            poll_interval_s=opts.poll_interval_s,
            on_overflow=self._on_overflow,
            notice=self._notice,
        )

    @property
    def _observer(self):
        return self.supervisor.observer

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the observer and the threads (once per Watcher); the catch-up runs in them."""
        if not os.path.isdir(self.root):
            raise NsfwTuiError(f"folder not found: {path_text(self.root)}")
        if self.log_path:
            # Its tail is read now; the scoring thread logs what it lacks before anything new.
            self.decider.log = DecisionLog(self.log_path)
        if not self.options.catch_up:
            # Before the observer starts: a file that lands after start() is never baseline.
            self.ledger.set_baseline(self.scope.walk())
        self.rescans.request("catch-up" if self.options.catch_up else "start")
        try:
            self.supervisor.start()
        except BaseException:
            self._close_log()
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
        self.supervisor.stop()  # after the settle thread: it may have restarted the observer
        self.coverage.close()
        self._close_log()

    def pause(self) -> None:
        """Stop handing files to the model; candidates keep settling meanwhile."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def request_rescan(self, reason: str = "requested") -> None:
        self.rescans.request(reason, keep_earlier=True)
        self._wake.set()

    def stats(self) -> WatchStats:
        s = self.tally.snapshot()
        s.pending = self.gate.pending()
        s.paused = self.paused
        s.polling = self.supervisor.polling
        return s

    def idle(self) -> bool:
        """Nothing settling, waiting or being scored (tests and benchmarks wait on this)."""
        return self._recovered.is_set() and not self.rescans.busy() and self.gate.idle()

    def _close_log(self) -> None:
        if self.decider.log is not None:
            self.decider.log.close()
            self.decider.log = None

    # -- what the observer reports (its own thread) ----------------------------------------

    def _hint(self, path: str, key: Key | None = None) -> None:
        if path and not self.coverage.saw(path) and self.scope.wanted(path):
            self.gate.hint(path, key)
            self._wake.set()

    def _gone(self, path: str) -> None:
        if self.coverage.owns(path):
            return  # a probe file removed: it never was a candidate
        self.gate.discard(path, gone=True)
        self._work.set()  # its row goes

    def _add_tree(self, folder: str) -> None:
        self.rescans.add_tree(folder)
        self._hint(folder)  # a folder named like an image is an entry to decide (N2)
        self._wake.set()

    def _on_overflow(self) -> None:
        self.tally.add("overflows")
        self.rescans.request("overflow")
        self._wake.set()

    # -- settle thread -------------------------------------------------------------------

    def _settle_loop(self) -> None:
        store = None
        next_check = self.clock.monotonic() + self.options.supervise_interval_s
        while not self._stop.is_set():
            try:
                if store is None:
                    store = Store.open(self.store_path, check=False)
                now = self.clock.monotonic()
                if now >= next_check:
                    self._supervise()
                    next_check = now + self.options.supervise_interval_s
                self._check_coverage()
                if (reason := self.rescans.due()) is not None:
                    self.rescans.run(store, reason)
                    if not self.supervisor.polling:  # do events reach us? (W15)
                        self.coverage.probe(self._epoch())
                self.rescans.walk_trees()
                if self.gate.promote():
                    self._work.set()
            except Exception as exc:  # a bad moment (busy store, odd file) must not end the watch
                logger.exception("watch: settle loop")
                self._notice(f"watch: {type(exc).__name__}: {exc}")
                self._stop.wait(1.0)
            self._wake.wait(self._tick)
            self._wake.clear()
        if store is not None:
            store.close()

    def _epoch(self) -> tuple[int, int]:
        """Changes when events were lost for a known reason (a restart, an overflow)."""
        s = self.tally.snapshot()
        return (s.restarts, s.overflows)

    def _check_coverage(self) -> None:
        """Poll from now on where native events are known not to cover the tree (W15)."""
        if self.supervisor.polling or not self.supervisor.alive():
            return  # a dead observer loses the probe's event too: restarted first
        failed = self.coverage.failure(self._epoch())
        if failed is None:
            return
        why, advice = failed
        self.coverage.close()
        self.supervisor.switch_to_polling()
        # Files that landed where no event came are found by this rescan; it runs after the
        # polling observer took its first snapshot, so no file falls between the two.
        self.rescans.request("switched to polling", keep_earlier=True)
        self._notice(
            f"native file events do not cover {path_text(self.root)}: {why}; polling the "
            f"whole folder every {self.options.poll_interval_s:g} s instead. {advice}".rstrip()
        )

    def _supervise(self) -> None:
        if self._stop.is_set() or not self.supervisor.restart_if_dead():
            return
        self.tally.add("restarts")
        self.rescans.request("observer restarted")
        self._notice("the file observer stopped; restarted it and rescanning")

    # -- scoring thread ------------------------------------------------------------------

    def _score_loop(self) -> None:
        store = None
        while not self._stop.is_set():
            if not self._recovered.is_set():  # before anything new: moves, then missing lines
                try:
                    if store is None:
                        store = Store.open(self.store_path, check=False)
                    self.scoring.recover(store)
                    self._recovered.set()
                except Exception as exc:
                    logger.exception("watch: recovery at start")
                    self._notice(f"watch: recovery failed ({type(exc).__name__}: {exc}); retrying")
                    self._stop.wait(1.0)
                continue
            if not self._running.is_set():
                self._running.wait(0.25)
                continue
            self._work.wait(0.25)
            if self._stop.is_set():
                break
            self._work.clear()  # before the take: a hand-over after it sets it again
            batch, gone, more = self.gate.take(self.options.max_batch)
            if more:
                self._work.set()
            try:
                if store is None:
                    store = Store.open(self.store_path, check=False)
                if gone:
                    self.scoring.forget(store, gone)
                if batch:
                    self.scoring.score(store, batch)
            except Exception as exc:
                logger.exception("watch: scoring")
                self._notice(
                    f"watch: scoring failed ({type(exc).__name__}: {exc}); the next rescan retries"
                )
                self._stop.wait(1.0)
        if store is not None:
            store.close()

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(text)
            except Exception:
                logger.exception("watch: on_notice callback")
        else:
            logger.info("%s", text)
