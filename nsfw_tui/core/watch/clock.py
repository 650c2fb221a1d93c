"""The watcher's clock: the system's by default, a hand-moved one for tests of its timing."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Two readings: ``monotonic`` schedules waits, ``time`` dates files (mtimes) and lines."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told, so settle and retry logic is tested without sleeping.

    Both readings advance together, as they do in real life over a short span.
    """

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._monotonic = monotonic
        self._wall = wall

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._monotonic += seconds
        self._wall += seconds

    def set_time(self, wall: float) -> None:
        """Set the wall clock alone, as an NTP step or a person does; monotonic time goes on."""
        self._wall = wall
