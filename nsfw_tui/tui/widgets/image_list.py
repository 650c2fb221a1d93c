"""The image list: a virtual, line-drawn table that renders only the rows on screen."""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...core.review import Review, Row
from ...core.store import path_text

BAR = 8
HEADER = 1  # the column titles stay on the first line while the rows scroll under them
# name | bar | probability | call | label | status
FIXED = BAR + 1 + 6 + 1 + 5 + 1 + 5 + 1 + 8


def printable(text: str) -> str:
    """File names and metadata as drawable text: nothing in them can reach the terminal raw.

    Control characters (ESC, BEL, the RTL override) become visible escapes such as ``\\x1b``;
    bytes that were not UTF-8 (surrogate escapes) become ``\\xff``, as in the store.
    """
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in path_text(text))


def _fit(text: str, width: int) -> str:
    text = printable(text)
    if len(text) > width:
        return text[: max(0, width - 1)] + "…"
    return text.ljust(width)


def _bar_colour(p: float) -> str:
    if p >= 0.66:
        return "#e5484d"
    if p >= 0.33:
        return "#f5a524"
    return "#46a758"


class ImageList(ScrollView, can_focus=True):
    """Rows come from ``Review.view``; the cursor is an index into it."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    COMPONENT_CLASSES = {"image-list--cursor", "image-list--header"}

    cursor: reactive[int] = reactive(0, always_update=True)

    @dataclass
    class Highlighted(Message):
        row: Row | None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.review: Review | None = None
        self.empty_text = "Loading…"
        # The view as last drawn: the review re-sorts and re-filters into a new list, and the
        # row under the cursor must be found in the old one to keep it there.
        self._rows: list[Row] = []

    @property
    def rows(self) -> list[Row]:
        return self._rows

    @property
    def current(self) -> Row | None:
        rows = self.rows
        return rows[self.cursor] if 0 <= self.cursor < len(rows) else None

    def show(self, review: Review, keep: Row | None = None) -> None:
        """Draw the review's view, keeping ``keep`` (or the current row) under the cursor."""
        keep = keep or self.current
        self.review = review
        self._rows = review.view
        self.virtual_size = Size(0, len(review.view) + HEADER)
        index = 0
        if keep is not None:
            for i, row in enumerate(review.view):
                if row is keep:
                    index = i
                    break
            else:
                index = min(self.cursor, max(0, len(review.view) - 1))
        self.cursor = index
        self.refresh()

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self.current))

    def _scroll_to_cursor(self) -> None:
        top = int(self.scroll_offset.y)
        height = max(1, self.size.height - HEADER)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * max(1, self.size.height - HEADER - 1)

    def action_jump(self, where: int) -> None:
        self.cursor = len(self.rows) - 1 if where < 0 else 0

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_offset.y) + event.y - HEADER
        if event.y >= HEADER and 0 <= index < len(self.rows):
            self.cursor = index

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(0, len(self.rows) + HEADER)

    def render_line(self, y: int) -> Strip:
        # The content width, without the vertical scrollbar: a row never scrolls sideways.
        width = self.scrollable_content_region.width
        base = self.rich_style
        rows = self.rows
        if y < HEADER:
            return self._header(width, base)
        if not rows:
            if y == HEADER:
                return Strip([Segment(_fit(self.empty_text, width), base)], width)
            return Strip.blank(width, base)
        index = int(self.scroll_offset.y) + y - HEADER
        if index >= len(rows):
            return Strip.blank(width, base)
        row = rows[index]
        style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("image-list--cursor")
        return Strip(self._segments(row, width, style), width).crop_extend(0, width, style)

    def _header(self, width: int, base: Style) -> Strip:
        name_w = max(8, width - FIXED)
        text = (
            "image".ljust(name_w + 1)
            + "P(nsfw)".ljust(BAR + 7)
            + "call".ljust(6)
            + "label".ljust(6)
            + "status"
        )
        style = base + self.get_component_rich_style("image-list--header")
        return Strip([Segment(_fit(text, width), style)], width).crop_extend(0, width, style)

    def _segments(self, row: Row, width: int, style: Style) -> list[Segment]:
        review = self.review
        name_w = max(8, width - FIXED)
        segs = [Segment(_fit(review.caption(row) if review else row.rel, name_w) + " ", style)]
        p = row.probability
        if p is not None:
            filled = round(p * BAR)
            colour = Style(color=_bar_colour(p))
            segs += [
                Segment("█" * filled, style + colour),
                Segment("·" * (BAR - filled), style + Style(dim=True)),
                Segment(f" {p:5.3f} ", style),
            ]
        elif row.error:
            # No score to draw: the reason takes the bar's place, and the call's and the
            # label's where those are empty (an error has no call), so the list says why.
            err_style = style + Style(color="#e5484d")
            if not row.label:
                segs.append(Segment(_fit(row.error, BAR + 6 + 1 + 5 + 1 + 5), err_style))
                segs.append(Segment(" ", style))
                status_style = style + Style(color="#e5484d")
                segs.append(Segment(_fit(row.status, 8), status_style))
                return segs
            segs.append(Segment(_fit(row.error, BAR + 6) + " ", err_style))
        else:
            segs.append(Segment(" " * BAR + "   –   ", style))
        call = review.call(row) if review else None
        call_style = style + Style(color="#e5484d" if call == "nsfw" else "#46a758", bold=True)
        segs.append(Segment(_fit((call or "").upper(), 5) + " ", call_style if call else style))
        label_style = style + Style(reverse=True) if row.label else style
        segs.append(Segment(_fit((row.label or "").upper(), 5), label_style))
        segs.append(Segment(" ", style))
        status_style = style + Style(color="#e5484d") if row.error else style + Style(dim=True)
        segs.append(Segment(_fit(row.status, 8), status_style))
        return segs
