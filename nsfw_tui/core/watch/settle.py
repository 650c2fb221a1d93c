"""The settle gate: a file is handed to the model only once its (size, mtime) stops changing."""

# A closed event does not mean "finished": renames never close and slow uploaders close many
# times. So events and rescans only make a path a candidate; the gate looks at it again on a
# schedule and hands it over once its key has stayed the same for `settle_s`. A file that
# keeps changing for `never_settles_timeout_s` is handed over as an error instead. A file
# that settled but failed to decode the way a partial upload fails (a stalled upload looks
# settled) waits for a change, or until it has been unchanged for `undecodable_grace_s`,
# and is then decided as it is: an error, never a pass. The gate reads time only from its
# clock and files only through `key_of`, and starts no thread, so all of this is tested
# without sleeping.

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .clock import Clock
from .scope import Key, file_key

# Decode failures a file still being written also shows: retried while the file is young
# (changed less than `undecodable_grace_s` ago).
RETRYABLE = frozenset({"empty", "truncated", "unidentified"})


@dataclass
class Candidate:
    key: Key | None  # None: not looked at yet
    since: float  # monotonic time this key was first seen
    first_seen: float
    check_at: float
    final_at: float | None = None  # retry mode: when a decode failure becomes final


@dataclass(frozen=True)
class Settled:
    path: str
    key: Key
    final: bool = False  # a retryable decode failure now counts
    error: tuple[str, str] | None = None  # decided without decoding (never settled)


class SettleGate:
    """Candidates, their schedule and the hand-over: settled files and paths that went away.

    Thread-safe (one lock of its own): events, rescans and the scoring thread all feed it.
    A settled path stays "in flight" until the scoring side calls `finish` or `drop`.
    """

    def __init__(
        self,
        *,
        settle_s: float,
        never_settles_s: float,
        grace_s: float,
        clock: Clock,
        key_of: Callable[[str], Key | None] = file_key,
    ) -> None:
        self.settle_s = settle_s
        self.never_settles_s = never_settles_s
        self.grace_s = grace_s
        self.clock = clock
        self.key_of = key_of
        self._lock = threading.Lock()
        self._candidates: dict[str, Candidate] = {}
        self._heap: list[tuple[float, int, str]] = []  # (check_at, tie-break, path)
        self._seq = itertools.count()
        self._settled: deque[Settled] = deque()
        self._inflight: set[str] = set()
        self._gone: set[str] = set()

    # -- what comes in --------------------------------------------------------------------

    def hint(self, path: str, key: Key | None = None) -> None:
        """Something happened at ``path``. A key (from a rescan) starts its wait at once; no
        key (an event) means: look at it now, which restarts the wait if it changed."""
        now = self.clock.monotonic()
        with self._lock:
            c = self._candidates.get(path)
            if c is None:
                c = Candidate(key, now, now, now)
                self._candidates[path] = c
                self._schedule(path, c, now + self.settle_s if key else now)
            elif key is None:
                self._schedule(path, c, now)

    def discard(self, path: str, *, gone: bool = False) -> None:
        """Forget a candidate; ``gone``: it was deleted or moved away, its row goes too."""
        with self._lock:
            self._candidates.pop(path, None)
            if gone:
                self._gone.add(path)

    def promote(self) -> int:
        """Look at every candidate that is due; returns how many were handed over."""
        now = self.clock.monotonic()
        due: list[tuple[str, Candidate]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                at, _, path = heapq.heappop(self._heap)
                c = self._candidates.get(path)
                if c is not None and c.check_at == at:  # else a stale entry
                    due.append((path, c))
        # Stat outside the lock (slow on a network mount), then hand over the whole pass
        # under it, so files that settle together reach the model in one batch.
        looked = [(path, c, self.key_of(path)) for path, c in due]
        settled = 0
        with self._lock:
            for path, c, key in looked:
                if self._candidates.get(path) is not c:
                    continue  # replaced or discarded meanwhile
                if key is None:
                    del self._candidates[path]  # gone, or not a regular file
                elif key != c.key:
                    c.key, c.since, c.final_at = key, now, None
                    if now - c.first_seen >= self.never_settles_s:
                        reason = f"still changing after {self.never_settles_s:g} s"
                        self._settle(path, key, error=("unsettled", reason))
                        settled += 1
                    else:
                        self._schedule(path, c, now + self.settle_s)
                elif c.final_at is not None:
                    if now >= c.final_at:
                        self._settle(path, key, final=True)
                        settled += 1
                    else:
                        self._schedule(path, c, c.final_at)
                elif now - c.since >= self.settle_s:
                    self._settle(path, key)
                    settled += 1
                else:
                    self._schedule(path, c, c.since + self.settle_s)
        return settled

    # -- the scoring side -----------------------------------------------------------------

    def take(self, limit: int) -> tuple[list[Settled], set[str], bool]:
        """Up to ``limit`` settled files, the paths gone since the last take, and whether
        settled files are left over."""
        with self._lock:
            batch = [self._settled.popleft() for _ in range(min(len(self._settled), limit))]
            gone, self._gone = self._gone, set()
            return batch, gone, bool(self._settled)

    def defer(self, settled: Settled, key: Key, error_kind: str | None) -> bool:
        """Whether a decode failure waits for another try instead of being decided.

        A young file that fails as a partial upload fails (`RETRYABLE`) is looked at again
        once it changes, and decided as it is once it has stayed unchanged for `grace_s`
        (the promotion then says ``final``).
        """
        if error_kind not in RETRYABLE or settled.final:
            return False
        wait = self.grace_left(key)
        if wait <= 0:
            return False
        now = self.clock.monotonic()
        final_at = now + wait
        with self._lock:
            self._inflight.discard(settled.path)
            c = Candidate(key, now, now, now, final_at)
            self._candidates[settled.path] = c
            self._schedule(settled.path, c, min(final_at, now + self.settle_s))
        return True

    def grace_left(self, key: Key) -> float:
        """Seconds until a file unchanged since ``key`` has been so for `grace_s`.

        Measured from its mtime on the wall clock, so a file found at start waits only for
        what is left; an mtime in the future (a skewed clock) waits `grace_s`, never longer.
        """
        age = self.clock.time() - key[1] / 1e9
        return min(self.grace_s, max(0.0, self.grace_s - age))

    def young(self, key: Key) -> bool:
        """Changed less than `grace_s` ago: a decode failure may be an upload in progress."""
        return self.grace_left(key) > 0

    def finish(self, paths: Iterable[str]) -> list[str]:
        """These paths are no longer in flight; returns those that still were."""
        with self._lock:
            was = [p for p in paths if p in self._inflight]
            self._inflight.difference_update(was)
            return was

    def drop(self, path: str, *, gone: bool = False) -> None:
        """An in-flight path that will not be decided now (gone, changed, already told)."""
        with self._lock:
            self._inflight.discard(path)
            if gone:
                self._gone.add(path)

    # -- what it holds --------------------------------------------------------------------

    def tracks(self, path: str) -> bool:
        """Settling or in flight: a rescan leaves it alone."""
        with self._lock:
            return path in self._candidates or path in self._inflight

    def pending(self) -> int:
        with self._lock:
            return len(self._candidates) + len(self._settled) + len(self._inflight)

    def idle(self) -> bool:
        with self._lock:
            return not (self._candidates or self._settled or self._inflight)

    # -- under the lock -------------------------------------------------------------------

    def _schedule(self, path: str, c: Candidate, at: float) -> None:
        c.check_at = at
        heapq.heappush(self._heap, (at, next(self._seq), path))

    def _settle(self, path: str, key: Key, **kw) -> None:
        self._candidates.pop(path, None)
        self._inflight.add(path)
        self._settled.append(Settled(path, key, **kw))
