"""The stats screen: confusion matrix and recall-first metrics on the labelled images."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from ...core.review import Stats
from ...core.thresholds import format_threshold


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def stats_table(stats: Stats, threshold: float, model: str) -> Table:
    c = stats.confusion
    matrix = Table(title=f"{model} at threshold {format_threshold(threshold)}", show_lines=True)
    matrix.add_column("label \\ call")
    matrix.add_column("NSFW", justify="right")
    matrix.add_column("SFW", justify="right")
    matrix.add_row("NSFW", str(c.tp), str(c.fn))
    matrix.add_row("SFW", str(c.fp), str(c.tn))
    return matrix


class StatsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,i", "dismiss", "Close")]

    def __init__(self, stats: Stats, threshold: float, model: str) -> None:
        super().__init__()
        self.stats = stats
        self.threshold = threshold
        self.model = model

    def compose(self) -> ComposeResult:
        s = self.stats
        c = s.confusion
        summary = Text()
        n = s.labelled
        summary.append(
            f"{n} labelled image{'s' * (n != 1)}, {s.scored_labelled} of them scored\n\n"
        )
        for name, value in (
            ("recall (NSFW found)", c.recall),
            ("precision", c.precision),
            ("accuracy", c.accuracy),
            ("false alarm rate", c.fpr),
            ("AUROC", s.auroc),
        ):
            summary.append(f"{name:<22}", style="bold")
            summary.append(f"{_pct(value)}\n")
        summary.append("\nEsc closes.", style="dim")
        with Vertical(id="dialog"):
            yield Static(stats_table(s, self.threshold, self.model), id="confusion")
            yield Static(summary, id="metrics")
