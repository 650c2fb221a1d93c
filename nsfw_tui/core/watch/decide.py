"""A settled file's decision: the verdict, the quarantine move, and its one line."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..decision import Call, decide
from ..names import path_b64
from ..quarantine import quarantine_move
from ..store import LabelEvent, Store, path_text
from ..thresholds import format_threshold
from ..watch_options import WatchStats
from .clock import Clock
from .log import DecisionLog
from .scope import Key

logger = logging.getLogger(__name__)

# A line's "source" for a decision a label made: undo is only ever done by a person.
_LABEL_SOURCES = {"human": "human", "undo": "human", "import": "import"}
_LABELLED_BY = {"human": "a person", "import": "`nsfw-tui import`"}


@dataclass(frozen=True)
class Rules:
    """What a decision depends on besides the file: the model, its threshold, the quarantine."""

    model: str
    threshold: float
    root: str
    quarantine: str | None = None
    dry_run: bool = False

    @property
    def acts(self) -> bool:
        """Files are really moved (a quarantine, and not a dry run)."""
        return bool(self.quarantine) and not self.dry_run


@dataclass(frozen=True)
class Outcome:
    """What is known of one file when it is decided."""

    path: str
    key: Key | None
    sha256: str | None = None
    probability: float | None = None
    error: tuple[str, str] | None = None  # (kind, reason)
    label: LabelEvent | None = None
    cached: bool = False
    frame_time: float | None = None  # a video: its highest-scoring frame, in seconds


@dataclass(frozen=True)
class Verdict:
    decision: Call
    source: str  # human, import, model, decoder or watcher
    reason: str


@dataclass(frozen=True)
class Told:
    """A file's line in this session: the same content is not told twice."""

    key: Key
    sha256: str | None
    decision: Call


class Ledger:
    """Which files this session has told, and which it leaves alone (present at start with
    catch-up off): an unchanged one is never decided again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._told: dict[str, Told] = {}
        self._baseline: dict[str, Key] = {}
        self._expected: dict[str, Told] = {}

    def set_baseline(self, files: dict[str, Key]) -> None:
        with self._lock:
            self._baseline = dict(files)

    def told(self, path: str, key: Key) -> bool:
        with self._lock:
            t = self._told.get(path)
            return (t is not None and t.key == key) or self._baseline.get(path) == key

    def expect(self, path: str, told: Told) -> None:
        """A file told in an earlier session, to be read again (P12): decided the same, it
        gets no second line; only a changed decision is told. It is still to be scored."""
        with self._lock:
            self._expected[path] = told

    def get(self, path: str) -> Told | None:
        with self._lock:
            return self._told.get(path) or self._expected.get(path)

    def record(self, path: str, told: Told) -> None:
        with self._lock:
            self._told[path] = told
            self._expected.pop(path, None)

    def forget(self, paths: Iterable[str]) -> None:
        with self._lock:
            for p in paths:  # a new file at this path later gets its own line
                self._told.pop(p, None)
                self._expected.pop(p, None)


class Tally:
    """The watcher's figures, and the decision rate over the last ten seconds."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stats = WatchStats()
        self._times: deque[float] = deque()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self._stats, name, getattr(self._stats, name) + n)

    def decision(self, call: Call, action: str, *, labelled: bool = False, cached: bool = False):
        with self._lock:
            st = self._stats
            st.seen += 1
            st.labelled += labelled
            st.cached += cached and not labelled
            st.nsfw += call is Call.NSFW
            st.sfw += call is Call.SFW
            st.errors += call is Call.ERROR
            st.quarantined += action in ("quarantined", "would-quarantine")
            self._times.append(self._clock.monotonic())

    def snapshot(self) -> WatchStats:
        with self._lock:
            s = WatchStats(**vars(self._stats))
            now = self._clock.monotonic()
            while self._times and self._times[0] < now - 10:
                self._times.popleft()
            if self._times:
                s.rate = len(self._times) / max(1.0, now - self._times[0])
        return s


class Decider:
    """Decides, quarantines and tells: ``on_decision`` first, then the log (W13)."""

    def __init__(
        self,
        rules: Rules,
        *,
        ledger: Ledger,
        tally: Tally,
        clock: Clock,
        on_decision: Callable[[dict], None] | None,
        notice: Callable[[str], None],
    ) -> None:
        self.rules = rules
        self.ledger = ledger
        self.tally = tally
        self.clock = clock
        self.on_decision = on_decision
        self.notice = notice
        self.log: DecisionLog | None = None  # opened by the watcher's start, closed by its stop

    def verdict(self, o: Outcome) -> Verdict:
        """A label outranks the model; no probability is an error."""
        threshold = self.rules.threshold
        decision = decide(o.probability, threshold, o.label and o.label.label).call
        if o.label is not None:
            source = _LABEL_SOURCES.get(o.label.source, o.label.source)
            by = _LABELLED_BY.get(source, source)
            return Verdict(decision, source, f"labelled {o.label.label} by {by}")
        if o.error is not None or o.probability is None:
            kind, why = o.error or ("error", "no probability")
            source = "watcher" if kind == "unsettled" else "decoder"
            return Verdict(decision, source, f"{kind}: {why}")
        op = ">=" if decision is Call.NSFW else "<"
        reason = f"probability {o.probability:.4f} {op} threshold {format_threshold(threshold)}"
        return Verdict(decision, "model", reason)

    def decide(self, store: Store, o: Outcome) -> None:
        """Decide, move and tell; a file whose content already has its line is not told again."""
        assert o.key is not None
        v = self.verdict(o)
        told = False
        try:
            before = self.ledger.get(o.path)
            if before and o.sha256 and (before.sha256, before.decision) == (o.sha256, v.decision):
                told = True
                return  # touched, not changed: the same content already has its line
            action, dest = "none", None
            if self.rules.quarantine and v.decision is not Call.SFW:
                action, dest = self._quarantine(store, o.path, o.sha256, v.reason)
            self.emit(o, v, action=action, dest=dest)
            told = True
        finally:
            # Done only once told: a failure leaves the file to the next rescan.
            if told:
                self.ledger.record(o.path, Told(o.key, o.sha256, v.decision))

    def tell_moved(self, o: Outcome, dest: str, reason: str) -> None:
        """The line of a file whose quarantine move finished before its line was written."""
        v = replace(self.verdict(o), reason=reason)
        self.emit(o, v, action="quarantined", dest=dest)

    def emit(self, o: Outcome, v: Verdict, *, action: str, dest: str | None) -> None:
        line: dict = {"time": self._now_iso(), "path": path_text(o.path)}
        # `path` and `dest` are for reading; a name that is not UTF-8 also travels exactly,
        # as base64 of its bytes, which `release --b64` and the log's own tail read (N1).
        if (raw := path_b64(o.path)) is not None:
            line["path_b64"] = raw
        line |= {
            "sha256": o.sha256,
            "size": o.key[0] if o.key else None,
            "probability": None if o.probability is None else round(float(o.probability), 6),
            "decision": v.decision.value,
            "action": action,
            "dest": None if dest is None else path_text(dest),
            "reason": v.reason,
            "source": v.source,
            "model": self.rules.model,
            "threshold": self.rules.threshold,
            "cached": bool(o.cached),
        }
        if dest is not None and (raw := path_b64(dest)) is not None:
            line["dest_b64"] = raw
        if o.frame_time is not None:  # only a video's line has it
            line["frame_time"] = round(o.frame_time, 3)
        self.tally.decision(
            v.decision,
            action,
            labelled=o.label is not None,
            cached=bool(o.cached) and o.probability is not None,
        )
        # stdout (or the screen) first, the log last: a kill in between repeats the line on
        # stdout at the next start (at-least-once) and never loses it from the log (W13).
        if self.on_decision is not None:
            try:
                self.on_decision(line)
            except Exception:  # a broken display must not stop the log
                logger.exception("watch: on_decision callback")
        if self.log is not None:
            self.log.write(line)

    def _now_iso(self) -> str:
        now = datetime.fromtimestamp(self.clock.time(), UTC)
        return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _quarantine(
        self, store: Store, path: str, sha256: str | None, reason: str
    ) -> tuple[str, str | None]:
        rules = self.rules
        assert rules.quarantine is not None
        target = os.path.join(rules.quarantine, os.path.relpath(path, rules.root))
        if rules.dry_run:
            base, ext = os.path.splitext(target)
            n = 0
            while os.path.lexists(target):
                n += 1
                target = f"{base}-{n}{ext}"
            return "would-quarantine", target
        try:
            moved = quarantine_move(store, path, target, sha256, reason)
        except OSError as exc:
            self.notice(f"cannot quarantine {path_text(path)}: {exc.strerror or exc}")
            return "quarantine-failed", None
        return "quarantined", moved
