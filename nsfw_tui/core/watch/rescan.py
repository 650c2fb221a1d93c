"""Rescans: the walks that find what events missed, and when the settle thread makes them."""

# Events are hints that can be lost (an inotify overflow, a dead observer, files that were
# there before the watch). A full walk at start, every `rescan_interval_s`, on an overflow
# and after an observer restart closes any gap; a folder that appears is walked on its own,
# as the files in a folder moved in bring no events. A walk hands the gate only what the
# store has not already decided for this model, so a rescan never repeats a line. A file
# decided from a read by an older completeness check (P12) is handed over once more, with its
# earlier decision expected: it gets a line only if reading it again changes that decision.

from __future__ import annotations

import threading
from collections.abc import Callable

from ..decision import Call, decide
from ..scan import CONTENT_ERRORS
from ..store import FileRow, LabelEvent, Store, path_text
from ..walk import WalkIssue
from .clock import Clock
from .decide import Ledger, Rules, Tally, Told
from .scope import Key, Scope
from .settle import RETRYABLE, SettleGate


class Rescans:
    """Pending rescan reasons and folders, and the walks themselves (on the settle thread)."""

    def __init__(
        self,
        *,
        interval_s: float,
        scope: Scope,
        gate: SettleGate,
        ledger: Ledger,
        rules: Rules,
        tally: Tally,
        clock: Clock,
        hint: Callable[[str, Key | None], None],
        notice: Callable[[str], None],
    ) -> None:
        self.interval_s = interval_s
        self.scope = scope
        self.gate = gate
        self.ledger = ledger
        self.rules = rules
        self.tally = tally
        self.clock = clock
        self.hint = hint
        self.notice = notice
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._trees: list[str] = []
        self._next: float | None = None  # the next periodic rescan (monotonic)

    def request(self, reason: str, *, keep_earlier: bool = False) -> None:
        with self._lock:
            self._reason = (self._reason if keep_earlier else None) or reason

    def add_tree(self, folder: str) -> None:
        with self._lock:
            self._trees.append(folder)

    def busy(self) -> bool:
        """Folders are waiting to be walked."""
        with self._lock:
            return bool(self._trees)

    def due(self) -> str | None:
        """The reason for a rescan now, if one is due; it is taken."""
        now = self.clock.monotonic()
        with self._lock:
            reason, self._reason = self._reason, None
            if self._next is None:
                self._next = now + self.interval_s
        if reason is None and now >= self._next:
            reason = "periodic"
        return reason

    def walk_trees(self) -> None:
        with self._lock:
            trees, self._trees = self._trees, []
        for folder in trees:
            for path in self.scope.tree(folder):
                self.hint(path, None)

    def run(self, store: Store, reason: str) -> None:
        """Hint every file the events may have missed: unknown, changed, or not yet done."""
        started = self.clock.monotonic()
        errors: list[WalkIssue] = []
        found = self.scope.walk(errors)
        # Gate first, ledger second: a file decided in between is in the ledger already.
        rest = [p for p in found if not self.gate.tracks(p)]
        rest = [p for p in rest if not self.ledger.told(p, found[p])]
        known = store.files(rest)
        shas = list({row.sha256 for row in known.values() if row.sha256})
        probs = store.predictions(self.rules.model, shas) if shas else {}
        # Labels say what a quarantine still has to move, and what an older read decided.
        ask = shas if self.rules.acts else [r.sha256 for r in known.values() if r.unchecked]
        ask = [s for s in ask if s]
        labels = store.current_labels(ask) if ask else {}
        new = again = 0
        for p in rest:
            row = known.get(p)
            key = found[p]
            if row is not None and (row.size, row.mtime_ns) == key:
                call = self._done(row, probs, labels)
                if call is not None and not row.unchecked:
                    continue
                if call is not None:
                    self.ledger.expect(p, Told(key, row.sha256, call))
                    self.hint(p, key)
                    again += 1
                    continue
            self.hint(p, key)
            new += 1
        self.tally.add("rescans")
        now = self.clock.monotonic()
        self._next = now + self.interval_s
        if reason not in ("catch-up", "start") or new or again:
            took = now - started
            older = f", {again} to read again (older completeness check)" if again else ""
            self.notice(
                f"rescan ({reason}): {len(found)} files, {new} to score{older}, {took:.2f} s"
            )
        for issue in errors:  # not a wanted name: told, though it gets no line
            self.notice(f"cannot read {path_text(issue.path)}: {issue.reason}")

    def _done(
        self, row: FileRow, probs: dict[str, float], labels: dict[str, LabelEvent]
    ) -> Call | None:
        """The call already made for a file the store knows, unchanged, when it needs nothing
        more from the watcher; None when it does."""
        if row.error_kind is None:
            if row.sha256 not in probs:
                return None  # not scored by this model
            prob: float | None = probs[row.sha256]
        elif row.error_kind in CONTENT_ERRORS:
            if row.error_kind in RETRYABLE and self.gate.young((row.size, row.mtime_ns)):
                return None
            prob = None
        else:
            return None  # timeout, crash, unreadable: worth another try
        label = labels[row.sha256].label if row.sha256 in labels else None
        call = decide(prob, self.rules.threshold, label).call
        # An SFW file stays put; NSFW and error files still have a move to make.
        return call if call is Call.SFW or not self.rules.acts else None
