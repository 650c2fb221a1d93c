"""The review screen: folder tree, image list, preview, status; keys to label and navigate."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Tree
from textual.worker import Worker, WorkerState, get_current_worker

from ...core.active_model import fitted_labels, labels_note, switch_line
from ...core.decision import count_flips
from ...core.errors import ImageError
from ...core.media import load_frame
from ...core.review import Review, Row, load_review
from ...core.scan import scan_files
from ...core.store import Store
from ...core.thresholds import format_threshold
from ..adaptation import AdaptationController
from ..host import ReviewHost
from ..label_writer import SetLabels, UndoLast
from ..messages import (
    LabelsFailed,
    LabelsSaved,
    PreviewReady,
    ReviewLoaded,
    ScoresReady,
    ScoringFinished,
    ScoringProgressed,
    StoreBusy,
    UndoEmpty,
)
from ..widgets.folder_tree import FolderTree
from ..widgets.image_list import ImageList, printable
from ..widgets.preview import Preview, blur, image_widget_class, prepare
from ..widgets.status_bar import StatusBar, adaptation_line
from ..widgets.thumbnail_grid import ThumbnailGrid
from .curating import Curating
from .dialogs import ConfirmScreen, HelpScreen, ModelScreen
from .large_image import LargeImageScreen
from .stats import StatsScreen

THRESHOLD_STEP = 0.05


@dataclass
class AdaptationFinished(Message):
    result: object | None  # core.adapt.Adaptation; None when there were too few labels
    problem: str | None = None  # why there was no adaptation


class ReviewScreen(Curating, Screen):
    BINDINGS = [
        Binding("n", "label('nsfw')", "NSFW"),
        Binding("s", "label('sfw')", "SFW"),
        Binding("u", "label(None)", "Clear"),
        Binding("z", "undo", "Undo"),
        Binding("N", "label_all('nsfw')", "All NSFW", show=False),
        Binding("S", "label_all('sfw')", "All SFW", show=False),
        Binding("space", "reveal", "Reveal"),
        Binding("g", "toggle_grid", "Grid"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("o", "cycle_sort", "Sort"),
        Binding("plus,equals_sign", "threshold(1)", "+Thr", show=False),
        Binding("minus", "threshold(-1)", "-Thr", show=False),
        Binding("slash", "search", "Search"),
        Binding("m", "pick_model", "Model"),
        Binding("r", "rescan(True)", "Rescan", show=False),
        Binding("i", "stats", "Stats"),
        Binding("t", "app.push_screen('training')", "Train"),
        Binding("A", "adapt", "Adapt", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "end_search", "Clear search", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, root: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.review: Review | None = None
        self.model_name = "…"
        self.models: list[tuple[str, str]] = []
        # The model of this run when --model named one; None once a person picks the active one.
        self.model_override: str | None = None
        self.progress: tuple[int, int] | None = None
        self.revealed: str | None = None  # the path the person chose to see unblurred
        self.optimistic: dict[str, str | None] = {}  # path -> label before an unsaved change
        self.preview_cache: PreviewReady | None = None
        self.rescan_said = False  # the next load was asked for with r: say what changed
        self.adaptation = AdaptationController(self._load_adapt_settings)
        self.grid_mode = False  # g: the thumbnail grid in place of the tree, list and preview

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield FolderTree(id="folders")
            yield ImageList(id="images")
            yield Preview(image_class=self.host.settings.image_class, id="preview")
            options = self.host.settings.scan_options
            yield ThumbnailGrid(
                self._image_class(),
                self.host.home.thumbnail_dir,
                workers=options.workers,
                timeout_s=options.timeout_s,
                id="grid",
            )
        yield Input(placeholder="search file names (Enter keeps, Esc clears)", id="search")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.query_one(ImageList).focus()
        self.query_one(Preview).clear("Loading…")
        self.grid.display = False
        self.grid.blurs = self.grid_blurs
        self.grid.frame_times = self.grid_frame_times
        self.model_override = self.host.settings.model_id
        self.load()

    @property
    def host(self) -> ReviewHost:
        """The app, typed with what this screen needs from it."""
        return cast(ReviewHost, self.app)

    @property
    def images(self) -> ImageList:
        return self.query_one(ImageList)

    @property
    def grid(self) -> ThumbnailGrid:
        return self.query_one(ThumbnailGrid)

    @property
    def current(self) -> Row | None:
        """The row the keys act on: the grid's current thumbnail, or the list's row."""
        return self.grid.current if self.grid_mode else self.images.current

    def refresh_all(self, keep: Row | None = None, tree: bool = True) -> None:
        if self.review is None:
            return
        self.review.refresh_view()
        if self.grid_mode:
            self.grid.show(self.review, keep)
        else:
            self.images.show(self.review, keep)
        self.query_one(StatusBar).show(self.review, self.model_name, self.progress)
        if tree:
            self.query_one(FolderTree).update_counts(self.review)

    # -- workers -------------------------------------------------------------------------

    def _store(self) -> Store:
        return Store.open(self.host.home.store_path, check=False)

    def _load_adapt_settings(self):
        """The adapt settings from config_adapt; a bad config is said once and turns it off."""
        from ...core.adapt import Settings
        from ...core.config import load_config
        from ...core.errors import ConfigError

        try:
            return Settings.from_config(load_config("adapt"))
        except ConfigError as exc:
            self.notify(str(exc), title="Adaptation off", severity="error", markup=False)
            return None

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self) -> None:
        from nsfw_tui.models.registry import resolve_model

        with self._store() as store:
            row = resolve_model(store, self.model_override)
            threshold = self.host.settings.threshold
            if threshold is None:
                threshold = row.threshold
            review, pending = load_review(self.root, store, row.id, threshold)
            remote = store.remote_files()
            self.models = [
                (m.id, f"{m.kind}, threshold {format_threshold(m.threshold)}")
                for m in store.models()
            ]
        self.post_message(ReviewLoaded(review, pending, row.id, fitted_labels(row), remote))

    @work(thread=True, exclusive=True, group="score", exit_on_error=False)
    def score(self, paths: list[str]) -> None:
        from nsfw_tui.models.registry import resolve_model

        worker = get_current_worker()
        with self._store() as store:
            scorer = self.host.make_scorer(resolve_model(store, self.model_name))
            result = scan_files(
                paths,
                scorer,
                store,
                self.host.settings.scan_options,
                on_items=lambda items: self.post_message(ScoresReady(items)),
                on_progress=lambda d, t: self.post_message(ScoringProgressed(d, t)),
                should_stop=lambda: worker.is_cancelled,
                save=not store.readonly,  # a read-only store: scored in memory only
            )
        self.post_message(ScoringFinished(result.scored, result.cancelled))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def load_preview(self, row: Row) -> None:
        details = {"history": []}
        at = None  # a video shows the frame that scored highest
        if row.sha256:
            with self._store() as store:
                details["history"] = store.label_history(row.sha256)
                if self.review is not None:
                    at = store.frame_times(self.review.model_id, [row.sha256]).get(row.sha256)
        image = blurred = None
        error = row.error
        if error is None:
            try:
                loaded = load_frame(row.path, at)
                image = prepare(loaded.frames[0])
                blurred = blur(image)
                details["dimensions"] = f"{loaded.width} x {loaded.height} {loaded.format}"
                if at is not None:
                    details["frame"] = f"{at:.2f} s (highest)"
            except ImageError as exc:
                error = f"{exc.kind}: {exc.reason}"
        if get_current_worker().is_cancelled:
            return
        self.post_message(PreviewReady(row.path, image, blurred, error, details))

    # -- worker results ------------------------------------------------------------------

    @on(ReviewLoaded)
    def on_review_loaded(self, message: ReviewLoaded) -> None:
        old = self.review
        review = message.review
        if old is not None:  # keep the person's view settings across a reload
            review.folder, review.filter, review.sort, review.search = (
                old.folder,
                old.filter,
                old.sort,
                old.search,
            )
            review.curation = old.curation  # until the new one is ready
            if self.host.settings.threshold is None and old.model_id == review.model_id:
                review.threshold = old.threshold
        if old is not None and self.rescan_said:
            self.rescan_said = False
            self.say_rescanned(old, review, message.pending)
        self.review = review
        self.model_name = message.model_name
        self.query_one(StatusBar).fitted = message.fitted
        if old is None and self.host.store_readonly:
            self.notify(
                f"Nothing is saved: scores are kept in memory only and labels are refused. "
                f"{self.host.store_readonly}",
                title="Read-only store",
                severity="warning",
                timeout=10,
                markup=False,
            )
        if old is None and message.remote:
            n = message.remote
            self.notify(
                f"{n} scored image{'s are' if n != 1 else ' is'} remote (URIs or tar shard "
                f"members from import-scores): this screen shows images whose bytes are on "
                f"this machine.",
                title="Remote images",
                timeout=10,
                markup=False,
            )
        if old is None and message.fitted:  # a head fitted on other images must not go unseen
            note = f"{message.model_name}, {labels_note(message.fitted)}; m picks another."
            self.notify(note, title="Active model", markup=False)
        self.query_one(FolderTree).build(review)
        self.images.empty_text = (
            f"No images in {self.root}" if not review.rows else "Nothing matches this filter"
        )
        current = self.current
        keep = review.by_path.get(current.path) if current else None
        self.refresh_all(keep)
        if not review.rows:
            self.query_one(Preview).clear(f"No images in {self.root}.")
        self.start_scoring(message.pending)
        self.start_curation()

    def start_scoring(self, pending: list[str]) -> None:
        if not pending:
            self.progress = None
            return
        current = self.current
        if current is not None and current.path in pending:
            pending = [current.path] + [p for p in pending if p != current.path]  # selected first
        self.progress = (0, len(pending))
        if self.review is not None:  # say so now, not after the first batch
            self.query_one(StatusBar).show(self.review, self.model_name, self.progress)
        self.score(pending)

    @on(ScoresReady)
    def on_scores_ready(self, message: ScoresReady) -> None:
        if self.review is None:
            return
        self.review.apply_scores(message.items)
        # a video's thumbnail shows its highest frame, which this scoring may have moved
        frames = {i.path: i.frame_time for i in message.items if i.frame_time is not None}
        self.grid.rescored(frames)
        current = self.current
        self.refresh_all(current)
        if self.grid_mode:
            return  # no preview under the grid
        if current is not None and any(i.path == current.path for i in message.items):
            self.load_preview(current)

    @on(Worker.StateChanged)
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # StateChanged does not bubble: hand this screen's workers to the app's one handler.
        if event.worker.group == "score" and event.state == WorkerState.ERROR:
            self.on_scoring_finished(ScoringFinished(0, True))  # the bar stops saying scoring
        if event.worker.group == "adapt" and event.state in (
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self.adaptation.finished()
            self.show_adaptation(" adaptation failed")
        self.host.on_worker_state_changed(event)

    @on(ScoringProgressed)
    def on_scoring_progressed(self, message: ScoringProgressed) -> None:
        self.progress = (message.done, message.total)
        if self.review is not None:
            self.query_one(StatusBar).show(self.review, self.model_name, self.progress)

    @on(ScoringFinished)
    def on_scoring_finished(self, message: ScoringFinished) -> None:
        self.progress = None
        if self.review is not None:
            self.query_one(StatusBar).show(self.review, self.model_name, None)
            if message.scored:
                self.start_curation()  # new images: new groups and features

    @on(ImageList.Highlighted)
    def on_highlighted(self, message: ImageList.Highlighted) -> None:
        row = message.row
        if row is None:
            if self.review is not None and self.review.rows:
                self.query_one(Preview).clear("Nothing matches this filter.")
            return
        if self.revealed != row.path:
            self.revealed = None
        preview = self.query_one(Preview)
        if preview.path != row.path:
            self.load_preview(row)

    @on(PreviewReady)
    def on_preview_ready(self, message: PreviewReady) -> None:
        current = self.images.current
        if current is None or current.path != message.path:
            return
        self.preview_cache = message
        self.draw_preview()

    def draw_preview(self) -> None:
        message, row, review = self.preview_cache, self.images.current, self.review
        if message is None or row is None or review is None or message.path != row.path:
            return
        preview = self.query_one(Preview)
        if message.error:
            preview.show_image(row.path, None, f"Cannot show this image.\n{message.error}")
        else:
            blurred = (
                self.host.settings.blur
                and self.revealed != row.path
                and (row.probability is None or row.probability >= review.threshold)
            )
            note = "blurred: space reveals" if blurred else ""
            preview.show_image(row.path, message.blurred if blurred else message.image, note)
        preview.show_details(self.details(row, message), message.details.get("history", []))

    def details(self, row: Row, message: PreviewReady) -> list[tuple[str, str]]:
        review = self.review
        prob = "–" if row.probability is None else f"{row.probability:.4f}"
        call = review.call(row) if review else None
        out = [
            # shown from the opened folder down (the title bar holds the full folder path)
            ("path", os.path.join(os.path.basename(os.path.abspath(self.root)), row.rel)),
            ("size", f"{row.size / 1024:.1f} KiB"),
        ]
        if "dimensions" in message.details:
            out.append(("dimensions", message.details["dimensions"]))
        if "frame" in message.details:
            out.append(("frame", message.details["frame"]))
        out += [
            ("probability", prob),
            ("model call", (call or "–").upper()),
            ("label", (row.label or "none").upper()),
            ("status", row.error or row.status),
        ]
        return out

    # -- labels --------------------------------------------------------------------------

    def _label_rows(self, rows: list[Row], label: str | None) -> bool:
        """Queue the change; False (and the person told why) when labels cannot be saved."""
        if self.host.store_readonly:
            self.notify(
                self.host.store_readonly, title="Labels not saved", severity="error", markup=False
            )
            return False
        for row in rows:
            self.optimistic.setdefault(row.path, row.label)
            row.label = label
        self.host.label_writer.submit(SetLabels([(r.path, r.sha256) for r in rows], label))
        if self.host.label_writer.busy:
            self.query_one(StatusBar).waiting = self.host.label_writer.waiting
        return True

    def _targets(self, rows: list[Row]) -> list[Row]:
        """The rows a label goes to: under the duplicates filter, every member of each group."""
        if self.review is None or self.review.filter != "duplicates":
            return rows
        return self.review.members_of(rows)

    def action_label(self, label: str | None) -> None:
        row = self.current
        if row is None:
            return
        if not self._label_rows(self._targets([row]), label):
            return  # refused: stay on the image rather than look as if it were done
        self.refresh_all(row)
        if label is None:
            self.draw_preview()
        elif self.grid_mode:
            if self.grid.current is row:
                self.grid.cursor += 1
        elif self.images.current is row:
            self.images.cursor += 1  # fast triage: on to the next image
        # else the filter hid the row and the cursor already stands on the next one

    def action_label_all(self, label: str) -> None:
        if self.review is None or not self.review.view:
            return
        marked = self._targets(self.grid.marked_rows()) if self.grid_mode else []
        if marked:  # chosen one by one with x: no question
            if self._label_rows(marked, label):
                self.grid.marked.clear()
                self.refresh_all()
                n, plural = len(marked), "s" * (len(marked) != 1)
                self.notify(f"Labelled {n} marked image{plural} {label.upper()}; z undoes it all.")
            return
        rows = self._targets(list(self.review.view))
        if self.host.store_readonly:
            self._label_rows(rows, label)  # says why at once, rather than ask first
            return

        def answer(yes: bool | None) -> None:
            if yes and self._label_rows(rows, label):
                self.refresh_all()
                self.notify(f"Labelled {len(rows)} images {label.upper()}; z undoes it all.")

        self.app.push_screen(
            ConfirmScreen(f"Label all {len(rows)} images in this view as {label.upper()}?"),
            answer,
        )

    def action_undo(self) -> None:
        self.host.label_writer.submit(UndoLast())

    @on(LabelsSaved)
    def on_labels_saved(self, message: LabelsSaved) -> None:
        writer = self.host.label_writer
        self.query_one(StatusBar).waiting = writer.waiting if writer.busy else 0
        if self.review is None:
            return
        for path, sha in (message.hashed or {}).items():
            row = self.review.by_path.get(path)
            if row is not None:
                row.sha256 = sha
            self.optimistic.pop(path, None)
        self.review.apply_labels(message.labels)
        if not message.undo and message.batch is not None:
            saved = sum(1 for v in message.labels.values() if v is not None)
            if self.adaptation.labels_saved(saved):
                self.start_adaptation()
        if message.undo:
            n = len(message.labels)
            self.notify(f"Undid the last label change ({n} image{'s' * (n != 1)}).")
        self.refresh_all()
        self.draw_preview()
        self.renew_novelty()  # the useful order moves away from what was just labelled
        current = self.images.current
        if not self.grid_mode and current is not None and current.sha256 in message.labels:
            self.load_preview(current)  # refresh the history under the (shown) preview

    @on(UndoEmpty)
    def on_undo_empty(self, message: UndoEmpty) -> None:
        self.notify("Nothing to undo.", timeout=3)

    @on(LabelsFailed)
    def on_labels_failed(self, message: LabelsFailed) -> None:
        if self.review is not None:
            for path in message.paths:
                row = self.review.by_path.get(path)
                if row is not None and path in self.optimistic:
                    row.label = self.optimistic.pop(path)
            self.refresh_all()
        self.notify(
            message.reason, title="Label not saved", severity="error", timeout=10, markup=False
        )

    @on(StoreBusy)
    def on_store_busy(self, message: StoreBusy) -> None:
        if message.seconds == 0 or not self.query_one(StatusBar).waiting:
            self.notify(
                "The store is busy (another nsfw-tui is writing); your labels are queued and "
                "will be saved as soon as it is free.",
                title="Store busy – waiting",
                severity="warning",
            )
        self._show_waiting()

    def _show_waiting(self) -> None:
        """The status bar's count of labels waiting for a busy store (none once it is free)."""
        writer = self.host.label_writer
        self.query_one(StatusBar).waiting = writer.waiting if writer.busy else 0
        self.refresh_all(tree=False)

    # -- view ----------------------------------------------------------------------------

    def action_reveal(self) -> None:
        row = self.current
        if row is None:
            return
        self.revealed = None if self.revealed == row.path else row.path
        if self.grid_mode:
            self.grid.redraw()
        else:
            self.draw_preview()

    def action_cycle_filter(self) -> None:
        if self.review is not None:
            self.notify(f"filter: {self.review.cycle_filter()}", timeout=2)
            self.refresh_all(tree=False)

    def action_cycle_sort(self) -> None:
        if self.review is not None:
            self.notify(f"sort: {self.review.cycle_sort()}", timeout=2)
            self.refresh_all(tree=False)

    def action_threshold(self, direction: int) -> None:
        if self.review is not None:
            self.review.move_threshold(direction * THRESHOLD_STEP)
            self.refresh_all()
            self.draw_preview()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def action_end_search(self) -> None:
        search = self.query_one("#search", Input)
        if search.display:
            search.value = ""
            search.display = False
            self.images.focus()

    @on(Input.Changed, "#search")
    def on_search_changed(self, event: Input.Changed) -> None:
        if self.review is not None:
            self.review.search = event.value
            self.refresh_all(tree=False)

    @on(Input.Submitted, "#search")
    def on_search_submitted(self, event: Input.Submitted) -> None:
        event.input.display = bool(event.value)
        self.images.focus()

    @on(Tree.NodeSelected, "#folders")
    def on_folder_selected(self, event: Tree.NodeSelected) -> None:
        if self.review is not None:
            self.review.folder = event.node.data or None
            self.refresh_all(tree=False)

    def action_stats(self) -> None:
        if self.review is not None:
            self.app.push_screen(
                StatsScreen(self.review.stats(), self.review.threshold, self.model_name)
            )

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_pick_model(self) -> None:
        def chosen(model_id: str | None) -> None:
            if model_id and model_id != self.model_name:
                self.model_override = None  # the person's pick becomes the active model
                self.switch_model(model_id)

        self.app.push_screen(ModelScreen(self.models, self.model_name), chosen)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def switch_model(self, model_id: str) -> None:
        with self._store() as store:
            store.set_active(model_id)
        self.app.call_from_thread(self.notify, switch_line(self.model_name, model_id))
        self.app.call_from_thread(self.action_rescan)

    def action_rescan(self, say: bool = False) -> None:
        """Walk the folder again; ``say``: tell what changed (the r key), even if nothing did."""
        self.rescan_said = say
        self.workers.cancel_group(self, "score")
        self.load()

    def say_rescanned(self, old: Review, new: Review, pending: list[str]) -> None:
        before, after = set(old.by_path), set(new.by_path)
        added, gone = len(after - before), len(before - after)
        folder = printable(str(self.root))
        if not (added or gone or pending):
            self.notify(f"Nothing changed in {folder}.", title="Rescan", markup=False)
            return
        parts = [f"{added} new", f"{gone} gone", f"{len(pending)} to score"]
        self.notify(f"{folder}: {', '.join(parts)}.", title="Rescan", markup=False)

    # -- the grid (it makes its page's thumbnails itself, off the UI thread) -----------------

    def _image_class(self) -> type:
        return self.host.settings.image_class or image_widget_class()

    def action_toggle_grid(self) -> None:
        keep = self.current
        self.grid_mode = not self.grid_mode
        for widget in (self.query_one(FolderTree), self.images, self.query_one(Preview)):
            widget.display = not self.grid_mode
        self.grid.display = self.grid_mode
        if self.grid_mode:
            self.grid.focus()
        else:
            self.grid.marked.clear()  # N and S in the list act on the whole view, as always
            self.images.focus()
        self.refresh_all(keep, tree=False)
        if not self.grid_mode and self.images.current is not None:
            self.load_preview(self.images.current)  # labels given in the grid show in its history

    def safe_blurs(self, row: Row) -> bool:
        """The preview's rule: safe mode blurs what is at or above the threshold, or unscored."""
        review = self.review
        return self.host.settings.blur and (
            row.probability is None or review is None or row.probability >= review.threshold
        )

    def grid_blurs(self, row: Row) -> bool:
        return self.safe_blurs(row) and self.revealed != row.path

    def grid_frame_times(self, shas: list[str]) -> dict[str, float]:
        """The frame each video's thumbnail shows, as the preview's (in the grid's worker)."""
        review = self.review
        if review is None:
            return {}
        with self._store() as store:
            return store.frame_times(review.model_id, shas)

    @on(ThumbnailGrid.Highlighted)
    def on_grid_highlighted(self, message: ThumbnailGrid.Highlighted) -> None:
        row = message.row
        if row is not None and self.revealed not in (None, row.path):
            self.revealed = None  # as in the list: a reveal lasts while its image is current
            self.grid.redraw()

    @on(ThumbnailGrid.Opened)
    def on_grid_opened(self, message: ThumbnailGrid.Opened) -> None:
        row = message.row
        blurs, revealed = self.safe_blurs(row), self.revealed == row.path

        def closed(seen: bool | None) -> None:
            self.revealed = row.path if seen else None
            self.grid.redraw()

        shown = self.grid.held.get(row.path)
        at = shown.frame_time if shown is not None else None  # a video: its thumbnail's frame
        large = LargeImageScreen(row, blurs, revealed, self._image_class(), at)
        self.app.push_screen(large, closed)

    # -- adaptation: a head on the cached features, every few labels and on A ---------------

    def action_adapt(self) -> None:
        self.start_adaptation()

    def start_adaptation(self) -> None:
        if self.host.store_readonly:
            self.notify(
                self.host.store_readonly, title="Cannot adapt", severity="error", markup=False
            )
            return
        settings = self.adaptation.start()
        if settings is None:
            return
        self.show_adaptation(" adapting…")
        self.run_adaptation(settings)

    def show_adaptation(self, line) -> None:
        bar = self.query_one(StatusBar)
        bar.set_adaptation(line)
        if self.review is not None:
            bar.show(self.review, self.model_name, self.progress)

    @work(thread=True, exclusive=True, group="adapt", exit_on_error=False)
    def run_adaptation(self, settings) -> None:
        from ...core.adapt import NotEnoughLabels, adapt

        with self._store() as store:
            try:
                result = adapt(store, self.host.home.models_dir, settings)
            except NotEnoughLabels as exc:
                need = " and ".join(f"{n} more {c.upper()}" for c, n in exc.needed.items() if n)
                self.post_message(AdaptationFinished(None, f" adapt: {need} labels needed"))
                return
        self.post_message(AdaptationFinished(result))

    @on(AdaptationFinished)
    def on_adaptation_finished(self, message: AdaptationFinished) -> None:
        again = self.adaptation.finished()
        result = message.result
        if result is None or self.review is None:
            self.show_adaptation(message.problem)
        else:
            if result.activated:  # the calls change under the person: the bar and a notice say so
                self.query_one(StatusBar).fitted = result.labels
                line = switch_line(result.previous_id, result.model_id, result.labels)
                self.notify(f"{line}. {result.decision}", title="Active model", markup=False)
            else:
                self.notify(result.decision, title=f"Adapted: {result.model_id}", markup=False)
            self.show_adaptation(adaptation_line(result, self.apply_adaptation(result)))
            self.start_curation()  # new out-of-fold scores: new suspects, another model
        if again:
            self.start_adaptation()

    def apply_adaptation(self, result) -> int:
        """Rescored rows in place (when the new model is active); returns the calls flipped."""
        review = self.review
        assert review is not None
        threshold = self.host.settings.threshold
        if threshold is None:
            threshold = result.threshold
        preds = result.predictions
        before = {
            r.sha256: r.probability for r in review.rows if r.sha256 and r.probability is not None
        }
        changed = count_flips(before, review.threshold, preds, threshold)
        flips = changed["to_nsfw"] + changed["to_sfw"]
        if not result.activated:
            return flips
        if result.model_id not in (m for m, _ in self.models):
            self.models.append(
                (result.model_id, f"adapted, threshold {format_threshold(result.threshold)}")
            )
        review.model_id = self.model_name = result.model_id
        self.model_override = None  # the new head is the active model now, and shown
        review.threshold = threshold
        unscored = []
        for row in review.rows:
            row.probability = preds.get(row.sha256) if row.sha256 else None
            if row.probability is None and row.error is None:
                unscored.append(row.path)  # no cached features: the adapted scorer decodes it
        self.refresh_all(self.current)
        self.draw_preview()
        self.workers.cancel_group(self, "score")
        self.start_scoring(unscored)
        return flips
