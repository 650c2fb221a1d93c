"""What the screens need from the app that hosts them, as protocols.

The app module imports the screens, so the screens cannot import the app (not even for type
checking: the project has no import loops). Each screen reads its app through a ``host``
property typed with one of these instead of reaching into ``self.app`` untyped; Textual's own
app API (push_screen, call_from_thread, ...) stays on ``self.app``. The protocols are
runtime-checkable so that a test can tell an app lacks something its screens ask for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from textual.worker import Worker

    from ..core.home import Home
    from ..core.scorers import Scorer
    from ..core.store import ModelRow
    from .label_writer import LabelWriter
    from .settings import ReviewSettings


@runtime_checkable
class ReviewHost(Protocol):
    """The review screen's app: its settings, the home, the label writer, scorers."""

    settings: ReviewSettings
    home: Home
    store_readonly: str | None
    """Why labels cannot be saved (a read-only store); None when they can."""
    label_writer: LabelWriter

    def make_scorer(self, row: ModelRow) -> Scorer: ...

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's one handler for worker failures (a notification each)."""
        ...


@runtime_checkable
class TrainingHost(Protocol):
    """The training screen's app: training runs there, so leaving the screen never stops it."""

    def training_summary(self, config_name: str) -> dict: ...

    def start_training(self, config_name: str) -> None: ...

    def cancel_training(self) -> None: ...

    def activate_model(self, model_id: str) -> object:
        """Make the model active and rescore (a worker; what it returns is not used)."""
        ...


@runtime_checkable
class WatchHost(Protocol):
    """The watch monitor's app: it owns the watcher."""

    dry_run: bool

    def toggle_pause(self) -> None: ...

    def rescan(self) -> None: ...

    def open_review(self, decision: dict) -> None: ...
