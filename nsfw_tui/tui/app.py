"""The Textual app and its one factory, `make_app`, used by the CLI and the tests."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App
from textual.worker import Worker, WorkerState, get_current_worker

from ..core.home import Home
from ..core.scan import inference_threads
from ..core.scorers import Scorer, ensure_builtin
from ..core.store import ModelRow, Store
from .label_writer import LabelWriter
from .messages import TrainingFinished, TrainingProgressed
from .screens.review import ReviewScreen
from .screens.training import TrainingScreen
from .settings import ReviewSettings


class NsfwTuiApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "nsfw-tui"

    def __init__(self, root: Path, home: Home, settings: ReviewSettings | None = None) -> None:
        super().__init__()
        self.root = root
        self.home = home
        self.settings = settings or ReviewSettings()
        self.store_readonly: str | None = None
        self.label_writer = LabelWriter(home.store_path, self.post_message_to_review)
        self.sub_title = str(root)

    def make_scorer(self, row: ModelRow) -> Scorer:
        factory = self.settings.scorer_factory
        if factory is not None:
            return factory(row)
        from nsfw_tui.models.registry import load_scorer

        return load_scorer(
            row,
            threads=inference_threads(self.settings.scan_options.workers),
            cache_dir=self.home.cache_dir,
        )

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
        self.install_screen(TrainingScreen(), name="training")
        self.push_screen(ReviewScreen(self.root))

    def on_unmount(self) -> None:
        self.label_writer.stop(abandon=self._abandon_labels)

    _abandon_labels = False

    async def action_quit(self) -> None:
        """Quit; with labels still waiting for a busy store, ask first (they would be lost)."""
        writer = self.label_writer
        n = writer.waiting
        if not (n and writer.busy):
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._abandon_labels = True
                self.exit()

        from .screens.dialogs import ConfirmScreen

        self.push_screen(
            ConfirmScreen(
                f"{n} label{'s are' if n != 1 else ' is'} not saved yet: the store is busy "
                "(another nsfw-tui is writing). Quit anyway and lose "
                f"{'them' if n != 1 else 'it'}?"
            ),
            answer,
        )

    # -- training: runs on the app, so the review screen stays usable and leaving the
    # training screen never stops it.

    def training_summary(self, config_name: str) -> dict:
        from ..core.config import load_config

        with Store.open(self.home.store_path, check=False) as store:
            labels = store.current_labels()
        counts = {"nsfw": 0, "sfw": 0}
        for ev in labels.values():
            counts[ev.label] += 1
        cfg = load_config(config_name, self.settings.train_overrides)
        t = cfg.training
        counts["config"] = (
            f"{config_name}.yaml: model {cfg.model.name}, {t.max_epochs} epochs, "
            f"batch {t.batch_size}, "
            f"lr {cfg.optimizer.learning_rate:g}, input {cfg.data.input_size[0]}x"
            f"{cfg.data.input_size[1]}, device {cfg.trainer.accelerator}"
        )
        return counts

    def start_training(self, config_name: str) -> None:
        self.run_training(config_name)

    def cancel_training(self) -> None:
        self.workers.cancel_group(self, "train")

    def _to_training(self, message) -> None:
        self.get_screen("training").post_message(message)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def run_training(self, config_name: str) -> None:
        from nsfw_tui.models.registry import resolve_model
        from trainer.run import RunResult, train

        from ..core.config import load_config
        from ..core.errors import missing_extra, require_extra
        from ..core.evaluate import comparable_images, labelled_scores, summary

        worker = get_current_worker()
        try:
            require_extra("train", "training")
            cfg = load_config(config_name, self.settings.train_overrides)
            result = train(
                self.home.store_path,
                self.home,
                cfg,
                on_event=lambda ev: self._to_training(TrainingProgressed(ev)),
                should_stop=lambda: worker.is_cancelled,
            )
        except Exception as exc:  # one clear line on the screen, whatever went wrong
            line = str(exc)
            if isinstance(exc, ModuleNotFoundError):  # a library only the train extra brings
                line = missing_extra(exc, "training") or line
            result = RunResult("", "failed", None, None, None, {}, [], [], None, {}, line)
        new: dict = {}
        active: dict = {}
        active_id = ""
        unseen: set[str] | None = None
        why = ""
        if result.status == "done" and result.model_id:
            with Store.open(self.home.store_path, check=False) as store:
                active_row = resolve_model(store, None)
                active_id = active_row.id
                new_row = store.model(result.model_id)
                # only images neither model was fitted on, or the new model's figures alone
                unseen, why = comparable_images(store, active_row, result.val_hashes)
                pairs = (
                    [(new_row, new)] if unseen is None else [(new_row, new), (active_row, active)]
                )
                for row, out in pairs:
                    scorer = self.make_scorer(row)
                    data = labelled_scores(
                        store,
                        scorer,
                        only=set(result.val_hashes) if unseen is None else unseen,
                        options=self.settings.scan_options,
                    )
                    out.update(summary(data, row.threshold))
        compared = 0 if unseen is None else len(unseen)
        self._to_training(TrainingFinished(result, active_id, new, active, compared, why))

    @work(thread=True, exclusive=True, group="activate", exit_on_error=False)
    def activate_model(self, model_id: str) -> None:
        from ..core.active_model import change_line

        with Store.open(self.home.store_path, check=False) as store:
            before = store.active_model()
            store.set_active(model_id)
            line = change_line(before, store.active_model())
        self.call_from_thread(self.notify, f"{line}; rescoring.")
        for screen in self.screen_stack:
            if isinstance(screen, ReviewScreen):
                self.call_from_thread(screen.action_rescan)

    @on(Worker.StateChanged)
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker failure becomes a notification; the app keeps running."""
        if event.state == WorkerState.ERROR:
            from ..core.errors import plain_line

            error = event.worker.error
            self.notify(
                plain_line(error) if error else "a background task failed",
                title=f"{event.worker.name or event.worker.group} failed",
                severity="error",
                timeout=10,
                markup=False,  # error text holds file names: shown literally
            )


def make_app(root: str | Path, *, home: Home, settings: ReviewSettings | None = None) -> NsfwTuiApp:
    """The review app over ``root``; ``settings`` None: the defaults (blur on, the active
    model's threshold, default scanning options, the registry's scorers)."""
    return NsfwTuiApp(Path(root), home, settings)
