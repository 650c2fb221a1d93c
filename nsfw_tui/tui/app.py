"""The Textual app and its one factory, `make_app`, used by the CLI and the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import on
from textual.app import App
from textual.worker import Worker, WorkerState

from ..core.home import Home
from ..core.scan import ScanOptions, inference_threads
from ..core.scorers import Scorer, ensure_builtin
from ..core.store import ModelRow, Store
from .label_writer import LabelWriter
from .screens.review import ReviewScreen


class NsfwTuiApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "nsfw-tui"

    def __init__(
        self,
        root: Path,
        home: Home,
        *,
        blur: bool = True,
        threshold: float | None = None,
        scan_options: ScanOptions | None = None,
        scorer_factory: Callable[[ModelRow], Scorer] | None = None,
        image_class=None,
    ) -> None:
        super().__init__()
        self.root = root
        self.home = home
        self.blur = blur
        self.threshold = threshold
        self.scan_options = scan_options or ScanOptions()
        self.scorer_factory = scorer_factory
        self.image_class = image_class
        self.store_readonly: str | None = None
        self.label_writer = LabelWriter(home.store_path, self.post_message_to_review)
        self.sub_title = str(root)

    def make_scorer(self, row: ModelRow) -> Scorer:
        if self.scorer_factory is not None:
            return self.scorer_factory(row)
        from trainer.registry import load_scorer

        return load_scorer(row, threads=inference_threads(self.scan_options.workers))

    def post_message_to_review(self, message) -> None:
        # Called from the writer thread: post_message is thread-safe.
        for screen in self.screen_stack:
            if isinstance(screen, ReviewScreen):
                screen.post_message(message)
                return

    def on_mount(self) -> None:
        # The CLI checked and migrated the store before the app started; this connection
        # only learns whether labels can be written at all.
        with Store.open(self.home.store_path, check=False) as store:
            self.store_readonly = store.readonly_reason
            ensure_builtin(store)
        self.label_writer.start()
        self.push_screen(ReviewScreen(self.root))

    def on_unmount(self) -> None:
        self.label_writer.stop()

    @on(Worker.StateChanged)
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker failure becomes a notification; the app keeps running."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{type(error).__name__}: {error}" if error else "a background task failed",
                title=f"{event.worker.name or event.worker.group} failed",
                severity="error",
                timeout=10,
            )


def make_app(
    root: str | Path,
    *,
    home: Home,
    blur: bool = True,
    threshold: float | None = None,
    scan_options: ScanOptions | None = None,
    scorer_factory: Callable[[ModelRow], Scorer] | None = None,
    image_class=None,
) -> NsfwTuiApp:
    return NsfwTuiApp(
        Path(root),
        home,
        blur=blur,
        threshold=threshold,
        scan_options=scan_options,
        scorer_factory=scorer_factory,
        image_class=image_class,
    )
