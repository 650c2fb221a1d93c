"""When the review screen adapts: every few saved labels and on `A`, one run at a time.

A plain state machine (no Textual), so its rules are tested without an app: the screen
asks it whether to start a run and tells it when one ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class AdaptationController:
    """Counts saved labels; starts a run when ``auto_every`` is reached or one is asked for.

    ``load_settings`` returns the adapt settings, or None when they cannot be had (bad
    config: said once by the caller, and no adaptation this session).
    """

    def __init__(self, load_settings: Callable[[], Any | None]) -> None:
        self._load_settings = load_settings
        self._settings: Any | None = None
        self._loaded = False
        self.labels_since = 0
        self.running = False
        self.again = False  # a run was asked for while one was running

    @property
    def settings(self) -> Any | None:
        if not self._loaded:
            self._settings = self._load_settings()
            self._loaded = True
        return self._settings

    def use(self, settings: Any | None) -> None:
        """Settings given directly (tests; a future settings screen) instead of the config's."""
        self._settings, self._loaded = settings, True

    def labels_saved(self, n: int) -> bool:
        """``n`` labels were saved; True when that makes it time to adapt."""
        self.labels_since += n
        settings = self.settings
        return settings is not None and 0 < settings.auto_every <= self.labels_since

    def start(self) -> Any | None:
        """The settings to run with now, or None: no settings, or a run already going (it
        will run once more when that one ends)."""
        settings = self.settings
        if settings is None:
            return None
        self.labels_since = 0
        if self.running:  # one at a time; labels saved meanwhile get the next run
            self.again = True
            return None
        self.running = True
        return settings

    def finished(self) -> bool:
        """A run ended (done, failed or cancelled); True when another was asked for meanwhile."""
        self.running = False
        again, self.again = self.again, False
        return again
