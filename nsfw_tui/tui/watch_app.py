"""The watch monitor: a live feed of decisions, counters, pause, and review on enter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..core.errors import NsfwTuiError
from ..core.home import Home
from ..core.scan import ScanOptions
from ..core.scorers import Scorer, ensure_builtin
from ..core.store import ModelRow, Store
from ..core.watch import Watcher, WatchOptions, WatchStats
from .app import NsfwTuiApp
from .messages import ReviewLoaded
from .screens.review import ReviewScreen
from .screens.training import TrainingScreen

FEED_ROWS = 500  # the feed keeps the newest decisions; the log file keeps them all
_STYLES = {"nsfw": "bold red", "sfw": "green", "error": "yellow"}


@dataclass
class DecisionLogged(Message):
    decision: dict


@dataclass
class WatchCounted(Message):
    stats: WatchStats

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WatchCounted)


@dataclass
class WatchNoticed(Message):
    text: str


class WatchScreen(Screen):
    """Newest decision first; enter opens the selected file's folder in the review screen."""

    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("enter", "open_selected", "Review"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.feed: deque[tuple[int, dict]] = deque(maxlen=FEED_ROWS)
        self.decisions: dict[str, dict] = {}
        self._new: list[dict] = []
        self._seq = 0
        self.stats = WatchStats()

    def compose(self) -> ComposeResult:
        yield Static(id="watch-status")
        yield DataTable(id="feed", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#feed", DataTable)
        table.add_column("time", key="time", width=8)
        table.add_column("file", key="file")
        table.add_column("P(nsfw)", key="p", width=7)
        table.add_column("decision", key="decision", width=8)
        table.add_column("action", key="action")
        table.focus()
        self.show_stats()
        self.set_interval(0.25, self.flush)

    @property
    def table(self) -> DataTable:
        return self.query_one("#feed", DataTable)

    @on(DecisionLogged)
    def on_decision_logged(self, message: DecisionLogged) -> None:
        self._new.append(message.decision)

    @on(WatchCounted)
    def on_watch_counted(self, message: WatchCounted) -> None:
        self.stats = message.stats
        self.show_stats()

    def show_stats(self) -> None:
        s = self.stats
        state = "[b yellow]paused[/]" if s.paused else "[b green]watching[/]"
        moved = "would quarantine" if getattr(self.app, "dry_run", False) else "quarantined"
        self.query_one("#watch-status", Static).update(
            f"{state} {Text(self.root).markup}   seen [b]{s.seen}[/]  NSFW [b red]{s.nsfw}[/]  "
            f"SFW [b green]{s.sfw}[/]  errors [b yellow]{s.errors}[/]  {moved} [b]{s.quarantined}"
            f"[/]  pending {s.pending}  {s.rate:.1f} files/s"
        )

    def flush(self) -> None:
        """Draw the decisions that arrived since the last flush (a burst redraws once)."""
        if not self._new:
            return
        for d in self._new:
            self._seq += 1
            self.feed.append((self._seq, d))
        self._new = []
        table = self.table
        selected = None
        if table.row_count and table.cursor_row > 0:
            with contextlib.suppress(Exception):
                selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        self.decisions = {}
        for seq, d in reversed(self.feed):
            key = str(seq)
            self.decisions[key] = d
            table.add_row(*self._cells(d), key=key)
        if selected in self.decisions:  # keep the person's row; else follow the newest
            table.move_cursor(row=table.get_row_index(selected), animate=False)

    def _cells(self, d: dict) -> list:
        p = d.get("probability")
        shown = d.get("dest") if d.get("action") == "quarantined" else d.get("path")
        try:
            name = os.path.relpath(d["path"], self.root)
        except ValueError:
            name = d["path"]
        if shown != d["path"]:
            name = f"{name} -> {shown}"
        return [
            d["time"][11:19],
            Text(name, overflow="ellipsis"),
            "" if p is None else f"{p:.3f}",
            Text(d["decision"], style=_STYLES.get(d["decision"], "")),
            Text(d["action"] if d["action"] != "none" else "", style="italic"),
        ]

    def selected(self) -> dict | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.decisions.get(key)

    def action_toggle_pause(self) -> None:
        self.app.toggle_pause()

    def action_open_selected(self) -> None:
        decision = self.selected()
        if decision is not None:
            self.app.open_review(decision)

    @on(DataTable.RowSelected, "#feed")
    def on_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_selected()


class WatchReviewScreen(ReviewScreen):
    """The review screen over one file's folder, with that file selected; `w` goes back."""

    BINDINGS = [Binding("w", "app.pop_screen", "Back to watch")]

    def __init__(self, root: Path, select: str | None = None, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.target = os.path.normpath(select) if select else None

    @on(ReviewLoaded)
    def _select_target(self, message: ReviewLoaded) -> None:
        self.call_after_refresh(self._move_to_target)  # after the base handler drew the rows

    def _move_to_target(self) -> None:
        if self.target is None:
            return
        for i, row in enumerate(self.images.rows):
            if os.path.normpath(row.path) == self.target:
                self.images.cursor = i
                self.target = None
                return


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
        path = decision["dest"] if moved else decision["path"]
        if not os.path.exists(path):
            self.notify(f"{path} is no longer there", severity="warning")
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
