"""The thumbnail grid: one page of cells, reused page after page; thumbnails for it and the next."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import get_current_worker

from ...core.decode_pool import DecodePool
from ...core.review import Review, Row
from ...core.thumbnails import ThumbnailCache, thumbnail_pool
from .image_list import printable
from .preview import blur

CELL_W = 20  # columns per cell, its frame included
CELL_H = 9  # lines per cell, its frame included
COLOURS = {"nsfw": "#e5484d", "sfw": "#46a758", None: "#8b8d98", "error": "#f5a524"}


@dataclass
class ThumbnailsReady(Message):
    """Thumbnails made or read from the cache by a worker, by path."""

    shown: dict[str, Shown]


@dataclass
class Shown:
    """A page thumbnail held in memory: the picture and its blurred twin, or why there is none."""

    image: Image.Image | None
    blurred: Image.Image | None
    error: str | None = None
    frame_time: float | None = None  # a video: the time of the frame it shows


def caption(row: Row, call: str | None) -> str:
    """The frame's short caption: the model's call and score in lower case, then the person's
    label in capitals after a tick (``nsfw 0.98 ✔SFW``)."""
    if row.error:
        head = "error"
    elif row.probability is None:
        head = "…"
    else:
        head = f"{call or ''} {row.probability:.2f}"
    return f"{head} ✔{row.label.upper()}" if row.label else head


class ThumbCell(Vertical):
    """One cell: a coloured frame (the model's call) titled with the name, the picture inside."""

    def __init__(self, image_class: type, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image_class = image_class
        self.path: str | None = None
        self.picture: Image.Image | None = None
        self.note = ""
        self._look: tuple | None = None

    def compose(self) -> ComposeResult:
        self._image = self._image_class(classes="thumb-image")
        self._message = Static("", classes="thumb-message")
        self._message.display = False
        with Container(classes="thumb-frame"):
            yield self._image
        yield self._message

    def show(self, row: Row | None, picture: Image.Image | None, note: str, look: tuple) -> None:
        """Draw ``row`` (None: an empty cell); only what changed is touched."""
        if picture is not self.picture:
            self.picture = picture
            self._image.image = picture
            self._image.display = picture is not None
        if note != self.note:
            self.note = note
            self._message.update(Content(printable(note)))
            self._message.display = bool(note)
        self.path = row.path if row else None
        if look == self._look:
            return
        self._look = look
        title, subtitle, colour, current, marked = look
        # No CSS class for the cursor: re-styling a cell's subtree on every key costs a frame.
        style = "bold" if current else ""
        title = ("● " if marked else "") + title
        self.border_title = Content.styled(title, style) if row else None
        self.border_subtitle = Content.styled(subtitle, style) if row else None
        kind = "heavy" if current else ("double" if marked else "round")
        self.styles.border = (kind, colour) if row else ("hidden", colour)


class ThumbnailGrid(Widget, can_focus=True):
    """Rows come from ``Review.view`` as in the list; the cursor is an index into it."""

    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("x", "mark", "Mark"),
        Binding("enter", "open", "Open"),
    ]

    # repaint=False: the cells that change repaint themselves; a repaint of the grid is all 24
    cursor: reactive[int] = reactive(0, always_update=True, init=False, repaint=False)

    @dataclass
    class Highlighted(Message):
        row: Row | None

    @dataclass
    class Opened(Message):
        row: Row

    def __init__(
        self,
        image_class: type,
        thumbnail_dir: Path,
        *,
        workers: int = 0,
        timeout_s: float = 20.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._image_class = image_class
        self.cache = ThumbnailCache(thumbnail_dir)
        self.decode_workers = workers  # decode processes; 0 decodes in the worker thread
        self.timeout_s = timeout_s
        self._pool: DecodePool | None = None  # made when the first thumbnail is needed
        self.review: Review | None = None
        self.rows: list[Row] = []
        self.marked: set[str] = set()  # paths
        self.columns = 1
        self.lines = 1
        self.first = 0  # index of the page's first row
        self.held: dict[str, Shown] = {}  # path -> thumbnail, for the rows of this page only
        self.blurs: Callable[[Row], bool] = lambda row: True
        # sha256s -> the time of each video's frame to show (the preview's); called in the
        # worker thread, so it may read the store
        self.frame_times: Callable[[list[str]], dict[str, float]] = lambda shas: {}
        self._cells: list[ThumbCell] = []
        self._page_key: tuple | None = None

    # -- the page ------------------------------------------------------------------------

    @property
    def page_size(self) -> int:
        return self.columns * self.lines

    @property
    def current(self) -> Row | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    @property
    def page(self) -> list[Row]:
        return self.rows[self.first : self.first + self.page_size]

    @property
    def window(self) -> list[Row]:
        """The rows whose thumbnails are held: this page and the next."""
        return self.rows[self.first : self.first + 2 * self.page_size]

    def show(self, review: Review, keep: Row | None = None) -> None:
        """Draw the review's view, keeping ``keep`` (or the current row) under the cursor."""
        keep = keep or self.current
        if self.review is not None and review.model_id != self.review.model_id:
            self.held.clear()  # another model may have scored another frame of a video highest
        self.review = review
        self.rows = review.view
        index = 0
        if keep is not None:
            for i, row in enumerate(self.rows):
                if row is keep:
                    index = i
                    break
            else:
                index = min(self.cursor, max(0, len(self.rows) - 1))
        self.cursor = index

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self) -> None:
        self.draw()
        self.post_message(self.Highlighted(self.current))

    def draw(self) -> None:
        """Turn the page when the cursor left it, then draw every cell."""
        size = self.page_size
        self.first = (self.cursor // size) * size if self.rows else 0
        page = self.page
        key = (self.first, size, tuple(id(r) for r in page))
        if key != self._page_key:
            self._page_key = key
            # Memory is bounded by the page: this one and the next (made ahead, so that
            # turning forward draws at once); nothing else stays in memory.
            keep = {r.path for r in self.window}
            self.held = {p: s for p, s in self.held.items() if p in keep}
            self._fetch([page, self.window[len(page) :]])
        for i, cell in enumerate(self._cells):
            self._draw_cell(cell, page[i] if i < len(page) else None, self.first + i)

    def _draw_cell(self, cell: ThumbCell, row: Row | None, index: int) -> None:
        if row is None:
            cell.show(None, None, "", ("", "", COLOURS[None], False, False))
            return
        call = self.review.call(row) if self.review else None
        shown = self.held.get(row.path)
        picture, note = None, ""
        if row.error:
            note = row.error
        elif shown is None:
            note = "…"
        elif shown.error:
            note = shown.error
        else:
            blurred = self.blurs(row)
            picture = shown.blurred if blurred else shown.image
        unreadable = row.error or (shown is not None and shown.error)
        colour = COLOURS["error"] if unreadable else COLOURS.get(call, COLOURS[None])
        marked = row.path in self.marked
        look = (printable(row.name), caption(row, call), colour, index == self.cursor, marked)
        cell.show(row, picture, note, look)

    def redraw(self) -> None:
        """Draw again after a change of labels, scores, threshold or reveal."""
        page = self.page
        for i, cell in enumerate(self._cells):
            self._draw_cell(cell, page[i] if i < len(page) else None, self.first + i)

    def rescored(self, frames: dict[str, float]) -> None:
        """Videos just scored (path -> their highest frame's time): a thumbnail held of
        another frame is dropped, and made again when the grid is next drawn."""
        stale = [p for p, t in frames.items() if p in self.held and self.held[p].frame_time != t]
        for path in stale:
            del self.held[path]
        if stale:
            self._page_key = None

    def add_thumbnails(self, shown: dict[str, Shown]) -> None:
        """Thumbnails from the worker; those of neither this page nor the next are dropped."""
        keep = {r.path for r in self.window}
        self.held.update({p: s for p, s in shown.items() if p in keep})
        if any(r.path in shown for r in self.page):
            self.redraw()

    # -- thumbnails: read from the disk cache or decoded in the pool, in a thread -----------

    def _fetch(self, pages: list[list[Row]]) -> None:
        """Thumbnails for ``pages`` (this one, then the next), those not held yet."""
        needed = [
            [(r.path, r.sha256) for r in rows if not r.error and r.path not in self.held]
            for rows in pages
        ]
        if not any(needed):
            self.workers.cancel_group(self, "thumbs")
            return
        if self._pool is None:  # its processes start on first use, in the worker thread
            self._pool = thumbnail_pool(self.decode_workers, self.timeout_s)
        self.load_thumbnails(needed)

    @work(thread=True, exclusive=True, group="thumbs", exit_on_error=False)
    def load_thumbnails(self, pages: list[list[tuple[str, str | None]]]) -> None:
        worker = get_current_worker()
        cache, pool = self.cache, self._pool
        assert pool is not None

        shas = [sha for needed in pages for _, sha in needed if sha]
        try:
            times = self.frame_times(shas) if shas else {}
        except Exception:  # a store that cannot be read costs a video its frame, not the grid
            times = {}

        def one(path: str, sha: str | None) -> tuple[str, Shown]:
            at = times.get(sha) if sha else None
            thumb = cache.get(path, sha, pool, self.timeout_s, at)
            image = thumb.image
            return path, Shown(image, blur(image) if image else None, thumb.error, at)

        # What the disk cache holds comes in one message a page (one redraw), the rest as it
        # decodes, this page's first.
        missing = []
        for needed in pages:
            held = {}
            for path, sha in needed:
                if worker.is_cancelled:
                    return
                at = times.get(sha) if sha else None
                image = cache.read(sha, at) if sha else None
                if image is None:
                    missing.append((path, sha))
                else:
                    held[path] = Shown(image, blur(image), frame_time=at)
            if held:
                self.post_message(ThumbnailsReady(held))
        if not missing:
            return
        with ThreadPoolExecutor(max(1, pool.workers), thread_name_prefix="thumb") as threads:
            futures = [threads.submit(one, path, sha) for path, sha in missing]
            for future in as_completed(futures):
                if worker.is_cancelled:  # the page turned: what is left is not wanted
                    for f in futures:
                        f.cancel()
                    return
                path, shown = future.result()
                self.post_message(ThumbnailsReady({path: shown}))

    def on_thumbnails_ready(self, message: ThumbnailsReady) -> None:
        self.add_thumbnails(message.shown)

    def on_unmount(self) -> None:
        if self._pool is not None:
            self._pool.close()

    # -- cells -----------------------------------------------------------------------------

    async def on_resize(self, event: events.Resize) -> None:
        columns = max(1, event.size.width // CELL_W)
        lines = max(1, event.size.height // CELL_H)
        if (columns, lines) == (self.columns, self.lines) and self._cells:
            return
        self.columns, self.lines = columns, lines
        self.styles.grid_size_columns = columns
        self.styles.grid_size_rows = lines
        await self.remove_children()
        self._cells = [ThumbCell(self._image_class) for _ in range(columns * lines)]
        await self.mount_all(self._cells)
        self._page_key = None
        self.draw()

    def on_click(self, event: events.Click) -> None:
        for i, cell in enumerate(self._cells):
            if cell.region.contains(event.screen_x, event.screen_y) and i < len(self.page):
                self.cursor = self.first + i
                return

    # -- keys ------------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        self.cursor += dx + dy * self.columns

    def action_page(self, direction: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, self.cursor + direction * self.page_size))

    def action_jump(self, where: int) -> None:
        self.cursor = len(self.rows) - 1 if where < 0 else 0

    def action_mark(self) -> None:
        row = self.current
        if row is None:
            return
        if row.path in self.marked:
            self.marked.discard(row.path)
        else:
            self.marked.add(row.path)
        self.cursor += 1  # mark and move on, as a label does

    def action_open(self) -> None:
        row = self.current
        if row is not None:
            self.post_message(self.Opened(row))

    def marked_rows(self) -> list[Row]:
        """The marked rows still in the view, in its order."""
        return [r for r in self.rows if r.path in self.marked]
