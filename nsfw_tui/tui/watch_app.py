"""The watch monitor: a live feed of decisions, counters, pause, and review on enter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from textual import events, on

from ..core.errors import NsfwTuiError
from ..core.home import Home
from ..core.scan import ScanOptions
from ..core.scorers import Scorer, ensure_builtin
from ..core.store import ModelRow, Store
from ..core.watch import Watcher, WatchOptions
from ..core.watch.log import exact_path
from .app import NsfwTuiApp
from .messages import DecisionLogged, WatchCounted, WatchNoticed
from .screens.training import TrainingScreen
from .screens.watch import WatchReviewScreen, WatchScreen


class WatchApp(NsfwTuiApp):
    """Owns the Watcher: started on mount, stopped on unmount; callbacks only post messages."""

    CSS_PATH = ["app.tcss", "watch_app.tcss"]
    TITLE = "nsfw-tui watch"

    def __init__(
        self,
        root: Path,
        home: Home,
        *,
        scorer: Scorer,
        watch_threshold: float,
        options: WatchOptions,
        scan_options: ScanOptions | None = None,
        log_path: str | os.PathLike | None = None,
        handle_signals: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(root, home, scan_options=scan_options, **kwargs)
        self.scorer = scorer
        self.watch_threshold = watch_threshold
        self.options = options
        self.dry_run = options.dry_run
        self.log_path = log_path
        self.handle_signals = handle_signals
        self.watcher: Watcher | None = None
        self.watch_screen = WatchScreen(os.path.abspath(root))
        self.sub_title = f"{root} (threshold {watch_threshold:g}, model {scorer.id})"

    def on_mount(self, event: events.Mount) -> None:
        # The review app's own on_mount would open the review screen over the whole folder.
        event.prevent_default()
        with Store.open(self.home.store_path, check=False) as store:
            self.store_readonly = store.readonly_reason
            ensure_builtin(store)
        self.label_writer.start()
        self.install_screen(TrainingScreen(), name="training")
        self.push_screen(self.watch_screen)
        self.watcher = Watcher(
            self.root,
            self.home.store_path,
            self.scorer,
            threshold=self.watch_threshold,
            options=self.options,
            scan_options=self.scan_options,
            log_path=self.log_path,
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
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.exit)

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.handle_signals:
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

    def open_review(self, decision: dict) -> None:
        moved = decision.get("action") == "quarantined" and decision.get("dest")
        # The exact name (from path_b64/dest_b64 where it is not UTF-8), not its text.
        path = exact_path(decision, "dest" if moved else "path")
        if path is None or not os.path.exists(path):
            shown = decision["dest"] if moved else decision["path"]
            self.notify(f"{shown} is no longer there", severity="warning")
            return
        self.push_screen(WatchReviewScreen(Path(os.path.dirname(path)), select=path))


def make_watch_app(
    root: str | Path,
    *,
    home: Home,
    scorer: Scorer,
    threshold: float,
    options: WatchOptions,
    scan_options: ScanOptions | None = None,
    log_path: str | os.PathLike | None = None,
    review_threshold: float | None = None,
    blur: bool = True,
    scorer_factory: Callable[[ModelRow], Scorer] | None = None,
    image_class=None,
    handle_signals: bool = False,
) -> WatchApp:
    return WatchApp(
        Path(root),
        home,
        scorer=scorer,
        watch_threshold=threshold,
        options=options,
        scan_options=scan_options,
        log_path=log_path,
        handle_signals=handle_signals,
        blur=blur,
        threshold=review_threshold,
        scorer_factory=scorer_factory,
        image_class=image_class,
    )
