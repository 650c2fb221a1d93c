"""The status bar: model, threshold, scoring progress, label counts, disagreements."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...core.review import Review
from .image_list import printable


class StatusBar(Static):
    def show(self, review: Review, model: str, progress: tuple[int, int] | None = None) -> None:
        c = review.counts()
        text = Text()
        text.append(" model ", style="dim")
        text.append(printable(model), style="bold")
        text.append("  threshold ", style="dim")
        text.append(f"{review.threshold:.2f}", style="bold")
        text.append("  scored ", style="dim")
        text.append(f"{c['scored']}/{c['total']}")
        if progress is not None and progress[0] < progress[1]:
            done, total = progress
            filled = int(12 * done / max(1, total))
            text.append(f" [{'█' * filled}{'·' * (12 - filled)}] scoring", style="#f5a524")
        text.append("  labels ", style="dim")
        text.append(f"{c['nsfw_labels']} NSFW", style="#e5484d")
        text.append(" / ")
        text.append(f"{c['sfw_labels']} SFW", style="#46a758")
        text.append("  disagreements ", style="dim")
        text.append(str(c["disagreements"]), style="bold" if c["disagreements"] else "")
        if c["errors"]:
            text.append("  errors ", style="dim")
            text.append(str(c["errors"]), style="#e5484d")
        text.append(f"  filter {review.filter} · sort {review.sort}", style="dim")
        if review.search:
            text.append("  search ", style="dim")
            text.append(printable(review.search))
        self.update(text)
