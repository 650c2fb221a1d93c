"""The watch monitor's screens: the live feed of decisions, and review opened from it."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path
from typing import cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ...core.watch import WatchStats
from ..host import WatchHost
from ..messages import DecisionLogged, ReviewLoaded, WatchCounted
from .review import ReviewScreen

FEED_ROWS = 500  # the feed keeps the newest decisions; the log file keeps them all
_STYLES = {"nsfw": "bold red", "sfw": "green", "error": "yellow"}


class WatchScreen(Screen):
    """Newest decision first; enter opens the selected file's folder in the review screen."""

    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("r", "rescan", "Rescan"),
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

    @property
    def host(self) -> WatchHost:
        """The app, typed with what this screen needs from it."""
        return cast(WatchHost, self.app)

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
        if s.polling:  # asked for, or native events fell short (a notice said why)
            state += " [yellow](polling)[/]"
        moved = "would quarantine" if self.host.dry_run else "quarantined"
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
        self.host.toggle_pause()

    def action_rescan(self) -> None:
        self.host.rescan()

    def action_open_selected(self) -> None:
        decision = self.selected()
        if decision is not None:
            self.host.open_review(decision)

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
