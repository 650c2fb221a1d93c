"""The status bar: model, threshold, scoring progress, label counts, disagreements, adaptation."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...core.review import Review
from ...core.thresholds import format_threshold
from .image_list import printable


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def adaptation_line(result, flips: int) -> Text:
    """What an adaptation did: its out-of-fold figures beside the built-in's, calls flipped."""
    cv, builtin = result.cv, result.builtin
    text = Text(" adapted ", style="dim")
    text.append("(active)" if result.activated else "(not active)", style="bold")
    text.append("  recall ", style="dim")
    text.append(_f(cv["recall"]), style="bold")
    text.append("  FPR ", style="dim")
    text.append(_f(cv["fpr"]), style="bold")
    text.append("  AUROC ", style="dim")
    text.append(_f(cv["auroc"], 3), style="bold")
    text.append("  vs built-in ", style="dim")
    text.append(f"{_f(builtin['recall'])} · {_f(builtin['fpr'])} · {_f(builtin['auroc'], 3)}")
    text.append(f"  {flips} call{'s' * (flips != 1)} ", style="dim")
    text.append("flipped" if result.activated else "would flip", style="dim")
    return text


class StatusBar(Static):
    """One line; two once there is an adaptation to report (``adaptation`` holds its text)."""

    adaptation: Text | None = None
    waiting: int = 0  # labels queued behind a busy store, not saved yet
    fitted: dict[str, int] | None = None  # NSFW / SFW labels an adapted active model learnt

    def set_adaptation(self, line: Text | str | None) -> None:
        self.adaptation = Text(line) if isinstance(line, str) else line
        if self.adaptation is not None:
            # over the stylesheet's one line; each line cut, not wrapped onto the next
            self.styles.height = 2
            self.styles.text_wrap = "nowrap"
            self.styles.text_overflow = "ellipsis"

    def show(self, review: Review, model: str, progress: tuple[int, int] | None = None) -> None:
        c = review.counts()
        text = Text()
        text.append(" model ", style="dim")
        text.append(printable(model), style="bold")
        if self.fitted:  # a head fitted elsewhere (the demo, say) shows on its label count
            n = sum(self.fitted.values())
            text.append(f" (fitted on {n} label{'s' * (n != 1)})", style="dim")
        text.append("  threshold ", style="dim")
        text.append(format_threshold(review.threshold), style="bold")
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
        if self.waiting:
            n = self.waiting
            text.append(f"  {n} label{'s' * (n != 1)} waiting: store busy", style="bold #f5a524")
        if self.adaptation is not None:
            text.append("\n")
            text.append_text(self.adaptation)
        self.update(text)
