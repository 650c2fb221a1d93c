"""The scoring thread's job: settled files through the one scan pipeline, then their decisions."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..quarantine import recover_moves
from ..scan import ScanItem, ScanOptions, scan_files
from ..scorers import Scorer
from ..store import Store
from .decide import Decider, Ledger, Outcome, Tally
from .log import unlogged
from .scope import Scope, entry_key
from .settle import Settled, SettleGate


class Scoring:
    """Scores what the gate handed over, on the store connection of the thread that calls it.

    A file that changed or went away since it settled is handed back to the gate or dropped,
    never decided: no line is ever written for a partial file.
    """

    def __init__(
        self,
        scorer: Scorer,
        scan_options: ScanOptions,
        *,
        scope: Scope,
        gate: SettleGate,
        ledger: Ledger,
        decider: Decider,
        tally: Tally,
        wake: Callable[[], None],
        should_stop: Callable[[], bool],
        notice: Callable[[str], None],
    ) -> None:
        self.scorer = scorer
        self.scan_options = scan_options
        self.scope = scope
        self.gate = gate
        self.ledger = ledger
        self.decider = decider
        self.tally = tally
        self.wake = wake  # the settle thread: a path was handed back
        self.should_stop = should_stop
        self.notice = notice

    def recover(self, store: Store) -> None:
        """Finish interrupted quarantine moves (W12), then log what the log lacks (W13)."""
        completed, abandoned = recover_moves(store)
        if completed or abandoned:
            self.notice(
                f"quarantine: completed {completed} and rolled back {abandoned} interrupted moves"
            )
        log = self.decider.log
        if log is None:
            return  # without a log nothing records what was printed: nothing to compare
        missing = unlogged(
            store,
            log.tail,
            root=self.scope.root,
            model_id=self.scorer.id,
            wanted=self.scope.wanted,
            young=self.gate.young,
        )
        for u in missing:
            o = Outcome(u.path, u.key, u.sha256, u.probability, u.error, u.label, cached=True)
            if u.move is not None:
                self.decider.tell_moved(o, dest=u.move.dest, reason=u.move.reason or "")
            elif u.key is not None:
                self._decide(store, o)
            log.tail.logged.add((u.path, u.sha256))  # a retry skips it
        if missing:
            self.notice(f"log: logged {len(missing)} decisions the log lacked")
        log.tail.logged.clear()  # only needed at start

    def forget(self, store: Store, paths: set[str]) -> None:
        """Deleted files leave no row behind (their images and labels stay)."""
        missing = [p for p in paths if not os.path.lexists(p)]
        self.ledger.forget(missing)
        if missing:
            store.forget_missing(missing)

    def score(self, store: Store, batch: list[Settled]) -> None:
        by_path: dict[str, Settled] = {}
        for s in batch:
            by_path[s.path] = s  # the newest promotion of a path wins
        paths: list[str] = []
        try:
            for path, s in by_path.items():
                key = entry_key(path)
                if key is None:
                    self.gate.drop(path, gone=True)
                elif key != s.key:
                    self._again(path)  # changed after it settled: settle again
                elif self.ledger.told(path, key):
                    self.gate.drop(path)
                elif s.error is not None:
                    self._decide(store, Outcome(path, key, error=s.error))
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
                    should_stop=self.should_stop,
                )
            except Exception:
                for path in self.gate.finish(paths):  # settle again and retry after a pause
                    self.gate.hint(path)
                self.wake()
                raise
            self.tally.add("scored", result.scored)
        finally:
            self.gate.finish(paths)

    def _handle(self, store: Store, items: list[ScanItem], by_path: dict[str, Settled]) -> None:
        shas = list({i.sha256 for i in items if i.sha256})
        labels = store.current_labels(shas) if shas else {}
        for item in items:
            s = by_path[item.path]
            key = entry_key(item.path)
            if key is None:  # gone (a dangling link is still there: it gets its error line)
                self.gate.drop(item.path, gone=True)
                continue
            if key != s.key:  # rewritten while it was being read: never log a partial file
                self._again(item.path)
                continue
            if self.gate.defer(s, key, item.error_kind):
                self.wake()  # a young file that failed to decode: tried again later
                continue
            label = labels.get(item.sha256) if item.sha256 else None
            error = (item.error_kind, item.error or "") if item.error_kind else None
            self._decide(
                store,
                Outcome(
                    item.path,
                    key,
                    item.sha256,
                    item.probability,
                    error,
                    label,
                    item.cached,
                    item.frame_time,
                ),
            )

    def _again(self, path: str) -> None:
        self.gate.drop(path)
        self.gate.hint(path)
        self.wake()

    def _decide(self, store: Store, o: Outcome) -> None:
        try:
            self.decider.decide(store, o)
        finally:
            self.gate.finish([o.path])  # after the ledger has it: a rescan then skips it
