"""The training screen: label counts, the config in short, live progress, curves, comparison."""

from __future__ import annotations

from typing import cast

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Sparkline, Static

from ..host import TrainingHost
from ..messages import TrainingFinished, TrainingProgressed

CONFIGS = ("config", "config_baseline")


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


class TrainingScreen(Screen):
    """Installed once; training runs on the app, so leaving this screen never stops it."""

    BINDINGS = [
        Binding("enter", "start", "Start"),
        Binding("c", "cancel", "Cancel"),
        Binding("b", "toggle_config", "ConvNext/baseline"),
        Binding("a", "activate", "Use new model"),
        Binding("escape,t", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.config_name = CONFIGS[0]
        self.losses: list[float] = []
        self.val_losses: list[float] = []
        self.aurocs: list[float] = []
        self.result = None
        self.comparison: TrainingFinished | None = None
        self.running = False
        self.log_lines: list[str] = []

    @property
    def host(self) -> TrainingHost:
        """The app, typed with what this screen needs from it."""
        return cast(TrainingHost, self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="training"):
            yield Static(id="train-summary")
            with Horizontal(classes="train-row"):
                yield Static("epochs  ", classes="train-label")
                yield ProgressBar(id="epochs", show_eta=False)
            with Horizontal(classes="train-row"):
                yield Static("batches ", classes="train-label")
                yield ProgressBar(id="batches", show_eta=True)
            yield Static("train loss per epoch", classes="chart-title")
            yield Sparkline([], id="loss-chart")
            yield Static("val AUROC per epoch", classes="chart-title")
            yield Sparkline([], id="auroc-chart")
            yield Static(id="train-log")
            yield Static(id="train-result")
        yield Footer()

    def on_screen_resume(self) -> None:
        self.show_summary()

    def show_summary(self) -> None:
        info = self.host.training_summary(self.config_name)
        text = Text()
        text.append("Fine-tune on your labels\n\n", style="bold")
        text.append(f"labelled: {info['nsfw']} NSFW, {info['sfw']} SFW\n")
        text.append(f"config:   {info['config']}\n", style="dim")
        state = "running" if self.running else "ready"
        text.append(f"status:   {state}", style="bold #f5a524" if self.running else "")
        text.append("   (enter starts, c cancels, b switches ConvNext/baseline, Esc goes back)")
        self.query_one("#train-summary", Static).update(text)

    def action_toggle_config(self) -> None:
        if not self.running:
            i = CONFIGS.index(self.config_name)
            self.config_name = CONFIGS[(i + 1) % len(CONFIGS)]
            self.show_summary()

    def action_start(self) -> None:
        if self.running:
            self.notify("Training is already running.")
            return
        self.losses, self.val_losses, self.aurocs, self.result = [], [], [], None
        self.query_one("#loss-chart", Sparkline).data = []
        self.query_one("#auroc-chart", Sparkline).data = []
        self.log_lines = []
        self.query_one("#train-log", Static).update("")
        self.query_one("#train-result", Static).update("")
        self.running = True
        self.host.start_training(self.config_name)
        self.show_summary()

    def action_cancel(self) -> None:
        if self.running:
            self.host.cancel_training()
            self.notify("Stopping after the current batch…")

    def action_activate(self) -> None:
        if self.result is None or not self.result.model_id:
            self.notify("No new model yet.")
            return
        self.host.activate_model(self.result.model_id)

    @on(TrainingProgressed)
    def on_training_progressed(self, message: TrainingProgressed) -> None:
        ev = message.event
        if ev.kind == "batch":
            bar = self.query_one("#batches", ProgressBar)
            bar.update(total=ev.batches, progress=ev.batch)
            self.query_one("#epochs", ProgressBar).update(total=ev.epochs, progress=ev.epoch - 1)
        elif ev.kind == "epoch":
            self.query_one("#epochs", ProgressBar).update(total=ev.epochs, progress=ev.epoch)
            m = ev.metrics
            if m.get("train_loss") is not None:
                self.losses.append(float(m["train_loss"]))
            if m.get("val_auroc") is not None:
                self.aurocs.append(float(m["val_auroc"]))
            self.query_one("#loss-chart", Sparkline).data = list(self.losses)
            self.query_one("#auroc-chart", Sparkline).data = list(self.aurocs)
            line = (
                f"epoch {ev.epoch}/{ev.epochs}: train loss {_f(m.get('train_loss'))}  "
                f"val loss {_f(m.get('val_loss'))}  val AUROC {_f(m.get('val_auroc'))}  "
                f"val accuracy {_f(m.get('val_accuracy'))}  val recall {_f(m.get('val_recall'))}"
            )
            self.add_log(line)
        elif ev.kind in ("start", "skipped", "registering"):
            self.add_log(ev.message)

    def add_log(self, line: str) -> None:
        self.log_lines = [*self.log_lines[-11:], line]
        self.query_one("#train-log", Static).update(Text("\n".join(self.log_lines)))

    @on(TrainingFinished)
    def on_training_finished(self, message: TrainingFinished) -> None:
        self.running = False
        self.result = message.result
        self.comparison = message
        self.show_summary()
        r = message.result
        out = self.query_one("#train-result", Static)
        if r.status != "done":
            out.update(Text(f"Run {r.status}: {r.message}", style="#e5484d"))
            return
        n_val = len(r.val_hashes)
        if message.why:
            title = f"The {n_val} validation images of this run"
        else:
            title = (
                f"{message.compared} of this run's {n_val} validation images, "
                f"fitted on by neither model"
            )
        table = Table(title=title, show_lines=False)
        table.add_column("metric")
        table.add_column(f"new: {r.model_id}", justify="right")
        if not message.why:
            table.add_column(f"active: {message.active_id}", justify="right")
        for key, label in (
            ("recall", "recall"),
            ("precision", "precision"),
            ("accuracy", "accuracy"),
            ("auroc", "AUROC"),
            ("threshold", "threshold"),
        ):
            cells = [_f(message.new.get(key))]
            if not message.why:
                cells.append(_f(message.active.get(key)))
            table.add_row(label, *cells)
        parts: list = [table]
        if message.why:
            parts.append(
                Text(f"cannot compare with {message.active_id}: {message.why}", style="dim")
            )
        if r.warning:  # a threshold that flags too many SFW images: said apart, in its colour
            parts.append(Text(f"warning: {r.warning}", style="#f5a524"))
        out.update(Group(*parts) if len(parts) > 1 else table)
        if r.warning:
            self.notify(
                "Training finished, but its threshold flags too many SFW images (see the "
                "warning); press a only if you want it active anyway.",
                severity="warning",
            )
        else:
            self.notify("Training finished: press a to make the new model active and rescore.")
