"""The watchdog observer: its events turned into hints, its death and overflows into rescans."""

# Events are only hints (see settle.py): inotify drops them when its queue overflows, and an
# observer whose handler raised or whose emitters stopped delivers nothing while looking
# alive. So the supervisor checks its threads and starts a new observer when one died, and
# a hook on watchdog's logger turns its overflow warning into a rescan; in both cases the
# rescan, not the events, finds what was missed. Where native events cannot start, or do
# not cover the tree (coverage.py), the supervisor polls instead, for good.

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

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

from ..errors import NsfwTuiError
from ..store import path_text
from .coverage import limit_advice

EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]


class Handler(FileSystemEventHandler):
    """Turns events into hints; never decides anything."""

    def __init__(
        self,
        *,
        hint: Callable[[str], None],
        gone: Callable[[str], None],
        tree: Callable[[str], None],
    ) -> None:
        self.hint = hint  # something happened to this file: look at it
        self.gone = gone  # this file was deleted or moved away
        self.tree = tree  # a folder appeared: walk it

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if isinstance(event, DirMovedEvent | DirCreatedEvent):
            # A folder moved in brings files that produce no events of their own.
            self.tree(dest or src)
        elif isinstance(event, FileMovedEvent):
            self.gone(src)
            self.hint(dest)
        elif isinstance(event, FileDeletedEvent):
            self.gone(src)
        else:
            self.hint(src)


class OverflowHook(logging.Handler):
    """watchdog only logs an inotify overflow; this turns the warning into a call."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lower()
        if "overflow" in message and "reconcil" not in message:
            self.on_overflow()


class Supervisor:
    """Starts the observer (falling back to polling when native events cannot start) and
    starts a new one when it died.

    ``native`` makes the native observer (tests pass one that loses events); ``polling``
    says whether the watch polls, from the start or since native events fell short.
    """

    def __init__(
        self,
        root: str,
        handler: FileSystemEventHandler,
        *,
        native: Callable[[], Any],
        polling: bool,
        poll_interval_s: float,
        on_overflow: Callable[[], None],
        notice: Callable[[str], None],
    ) -> None:
        self.root = root
        self.handler = handler
        self.native = native
        self.polling = polling
        self.poll_interval_s = poll_interval_s
        self.notice = notice
        self.hook = OverflowHook(on_overflow)
        self.observer = None

    def start(self) -> None:
        wd_log = logging.getLogger("watchdog")
        if wd_log.getEffectiveLevel() > logging.WARNING:
            wd_log.setLevel(logging.WARNING)  # else the overflow warning never reaches the hook
        wd_log.addHandler(self.hook)
        try:
            self.observer = self._new_observer()
        except BaseException:
            wd_log.removeHandler(self.hook)
            raise

    def stop(self) -> None:
        _stop(self.observer)
        logging.getLogger("watchdog").removeHandler(self.hook)

    def alive(self) -> bool:
        obs = self.observer
        if obs is None or not obs.is_alive():
            return False
        emitters = obs.emitters
        return bool(emitters) and all(e.is_alive() for e in emitters)

    def restart_if_dead(self) -> bool:
        """Whether a dead observer was replaced (the caller then rescans)."""
        if self.alive():
            return False
        _stop(self.observer)
        try:
            self.observer = self._new_observer()
        except NsfwTuiError as exc:
            self.notice(f"the observer died and cannot restart: {exc}")
            return False
        return True

    def switch_to_polling(self) -> None:
        """Poll from now on: native events do not cover the tree (the caller rescans)."""
        if self.polling:
            return
        self.polling = True
        _stop(self.observer)
        self.observer = None
        self.observer = self._new_observer()

    def _new_observer(self):
        from watchdog.observers.polling import PollingObserver

        while True:
            obs = None
            try:
                if self.polling:
                    obs = PollingObserver(timeout=self.poll_interval_s)
                else:
                    obs = self.native()  # inotify_init itself may fail (the instance limit)
                obs.schedule(self.handler, self.root, recursive=True, event_filter=EVENTS)
                obs.start()
            except OSError as exc:
                _stop(obs)
                if isinstance(exc, FileNotFoundError) or self.polling:
                    raise NsfwTuiError(f"cannot watch {path_text(self.root)}: {exc}") from exc
                # inotify instance or watch limit: polling still sees every file
                self.polling = True
                advice = limit_advice(exc)
                self.notice(
                    f"native file events unavailable for {path_text(self.root)} ({exc}); "
                    f"polling every {self.poll_interval_s:g} s instead. {advice}".rstrip()
                )
                continue
            return obs


def _stop(obs) -> None:
    if obs is None:
        return
    with contextlib.suppress(Exception):
        obs.stop()
    with contextlib.suppress(Exception):
        obs.join(2)
