"""One image on the whole screen, opened from the grid: blurred as the preview is, space reveals."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from ...core.errors import ImageError
from ...core.media import load_frame
from ...core.review import Row
from ..widgets.preview import Preview, blur, prepare


@dataclass
class LargeReady(Message):
    image: Image.Image | None
    blurred: Image.Image | None
    error: str | None
    dimensions: str = ""


class LargeImageScreen(Screen[bool]):
    """The preview pane, full size; ``blurs`` is the safe-mode decision for this image, and
    ``revealed`` whether the person already chose to see it. Dismissed with ``revealed``."""

    BINDINGS = [
        Binding("escape,enter,q", "close", "Back to the grid"),
        Binding("space", "reveal", "Reveal"),
    ]

    def __init__(
        self,
        row: Row,
        blurs: bool,
        revealed: bool,
        image_class: type | None = None,
        frame_time: float | None = None,
    ) -> None:
        super().__init__()
        self.row = row
        self.frame_time = frame_time  # a video: the frame its thumbnail shows
        self.blurs = blurs
        self.revealed = revealed
        self._image_class = image_class
        self.ready: LargeReady | None = None

    def compose(self) -> ComposeResult:
        yield Preview(image_class=self._image_class, id="large")
        yield Footer()

    def on_mount(self) -> None:
        preview = self.query_one(Preview)
        if self.row.error:
            preview.show_image(self.row.path, None, f"Cannot show this image.\n{self.row.error}")
        else:
            preview.clear("Loading…")
            self.load()

    @work(thread=True, exclusive=True, group="large", exit_on_error=False)
    def load(self) -> None:
        try:
            loaded = load_frame(self.row.path, self.frame_time)
            image = prepare(loaded.frames[0])
            ready = LargeReady(image, blur(image), None, f"{loaded.width} x {loaded.height}")
        except ImageError as exc:
            ready = LargeReady(None, None, f"{exc.kind}: {exc.reason}")
        if not get_current_worker().is_cancelled:
            self.post_message(ready)

    @on(LargeReady)
    def on_large_ready(self, message: LargeReady) -> None:
        self.ready = message
        self.draw()

    def draw(self) -> None:
        message, row = self.ready, self.row
        if message is None:
            return
        preview = self.query_one(Preview)
        if message.error:
            preview.show_image(row.path, None, f"Cannot show this image.\n{message.error}")
            return
        blurred = self.blurs and not self.revealed
        note = "blurred: space reveals" if blurred else ""
        preview.show_image(row.path, message.blurred if blurred else message.image, note)
        preview.show_details([("path", row.rel), ("dimensions", message.dimensions)], [])

    def action_reveal(self) -> None:
        self.revealed = not self.revealed
        self.draw()

    def action_close(self) -> None:
        self.dismiss(self.revealed)
