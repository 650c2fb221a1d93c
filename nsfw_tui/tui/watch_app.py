"""The watch monitor: a live feed of decisions, counters, pause, and review on enter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from textual import events, on

from ..core.errors import NsfwTuiError
from ..core.home import Home
from ..core.scorers import ensure_builtin
from ..core.store import Store
from ..core.thresholds import format_threshold
from ..core.watch import Watcher
from ..core.watch.log import exact_path
from .app import NsfwTuiApp
from .messages import DecisionLogged, WatchCounted, WatchNoticed
from .screens.training import TrainingScreen
from .screens.watch import WatchReviewScreen, WatchScreen
from .settings import WatchSettings


class WatchApp(NsfwTuiApp):
    """Owns the Watcher: started on mount, stopped on unmount; callbacks only post messages."""

    CSS_PATH = ["app.tcss", "watch_app.tcss"]
    TITLE = "nsfw-tui watch"

    def __init__(self, root: Path, home: Home, settings: WatchSettings) -> None:
        super().__init__(root, home, settings.review)
        self.run_settings = settings  # the watch run's; self.settings: its review screens'
        self.dry_run = settings.options.dry_run
        self.watcher: Watcher | None = None
        self.watch_screen = WatchScreen(os.path.abspath(root))
        self.sub_title = (
            f"{root} (threshold {format_threshold(settings.threshold)}, model {settings.scorer.id})"
        )

    def on_mount(self, event: events.Mount) -> None:
        # The review app's own on_mount would open the review screen over the whole folder.
        event.prevent_default()
        with Store.open(self.home.store_path, check=False) as store:
            self.store_readonly = store.readonly_reason
            ensure_builtin(store)
        self.label_writer.start()
        self.install_screen(TrainingScreen(), name="training")
        self.push_screen(self.watch_screen)
        run = self.run_settings
        self.watcher = Watcher(
            self.root,
            self.home.store_path,
            run.scorer,
            threshold=run.threshold,
            options=run.options,
            scan_options=self.settings.scan_options,
            log_path=run.log_path,
            on_decision=self._post_decision,
            on_notice=lambda text: self.post_message(WatchNoticed(text)),
        )
        try:
            self.watcher.start()
        except NsfwTuiError as exc:
            self.watcher = None
            self.exit(return_code=2, message=f"error: {exc}")
            return
        self.set_interval(1.0, self._post_stats)
        if self.run_settings.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.exit)

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.run_settings.handle_signals:
            with contextlib.suppress(Exception):
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    def _post_decision(self, decision: dict) -> None:
        # Called on the watcher's scoring thread: post_message is thread-safe.
        self.watch_screen.post_message(DecisionLogged(decision))
        if self.watcher is not None:
            self.watch_screen.post_message(WatchCounted(self.watcher.stats()))

    def _post_stats(self) -> None:
        if self.watcher is not None:
            self.watch_screen.post_message(WatchCounted(self.watcher.stats()))

    @on(WatchNoticed)
    def on_watch_noticed(self, message: WatchNoticed) -> None:
        self.notify(message.text, timeout=4)

    def toggle_pause(self) -> None:
        if self.watcher is None:
            return
        if self.watcher.paused:
            self.watcher.resume()
            self.notify("resumed", timeout=2)
        else:
            self.watcher.pause()
            self.notify("paused: files keep arriving and wait; p resumes", timeout=3)
        self._post_stats()

    def rescan(self) -> None:
        """Walk the whole folder now: after a mount, or files copied in while events were off."""
        if self.watcher is not None:
            self.watcher.request_rescan("asked for")
            self.notify("rescanning the folder", timeout=2)

    def open_review(self, decision: dict) -> None:
        moved = decision.get("action") == "quarantined" and decision.get("dest")
        # The exact name (from path_b64/dest_b64 where it is not UTF-8), not its text.
        path = exact_path(decision, "dest" if moved else "path")
        if path is None or not os.path.exists(path):
            shown = decision["dest"] if moved else decision["path"]
            self.notify(f"{shown} is no longer there", severity="warning")
            return
        self.push_screen(WatchReviewScreen(Path(os.path.dirname(path)), select=path))


def make_watch_app(root: str | Path, *, home: Home, settings: WatchSettings) -> WatchApp:
    return WatchApp(Path(root), home, settings)
