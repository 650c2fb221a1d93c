"""The preview pane: the image (blurred in safe mode) and its details, all shown literally."""

from __future__ import annotations

from datetime import datetime

from PIL import Image, ImageFilter
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.widgets import Static

from ...core.store import LabelEvent
from .image_list import printable

PREVIEW_SIDE = 768  # pixels kept for the preview: plenty for any terminal renderer


def image_widget_class():
    """textual-image's best renderer for this terminal (half-cell in tests, see conftest)."""
    from textual_image.widget import Image as AutoImage

    return AutoImage


def blur(image: Image.Image) -> Image.Image:
    """Strong enough that nothing explicit survives, soft enough to tell a scene apart."""
    radius = max(6, max(image.size) // 18)
    return image.filter(ImageFilter.GaussianBlur(radius))


def prepare(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return image


class Preview(Vertical):
    """Shows one image at a time; the caller decides whether it is blurred."""

    def __init__(self, image_class=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image_class = image_class or image_widget_class()
        self.shown: Image.Image | None = None
        self.path: str | None = None

    def compose(self) -> ComposeResult:
        with Container(id="preview-frame"):
            yield self._image_class(id="preview-image")
        yield Static("", id="preview-message")
        yield Static("", id="preview-details")

    def show_image(self, path: str, image: Image.Image | None, message: str = "") -> None:
        self.path = path
        self.shown = image
        widget = self.query_one("#preview-image")
        widget.image = image
        widget.display = image is not None
        msg = self.query_one("#preview-message", Static)
        msg.update(Text("\n".join(printable(line) for line in message.split("\n"))))
        msg.display = bool(message)

    def show_details(self, details: list[tuple[str, str]], history: list[LabelEvent]) -> None:
        text = Text()
        for key, value in details:
            text.append(f"{key:<12}", style="bold")
            text.append(printable(value))  # plain text: names never become markup or codes
            text.append("\n")
        if history:
            text.append("history\n", style="bold")
            for ev in reversed(history[-8:]):
                when = datetime.fromtimestamp(ev.created_at).strftime("%Y-%m-%d %H:%M:%S")
                text.append(f"  {when}  {(ev.label or 'cleared'):<7} {ev.source}\n")
        self.query_one("#preview-details", Static).update(text)

    def clear(self, message: str) -> None:
        self.path = None
        self.show_image("", None, message)
        self.query_one("#preview-details", Static).update("")
