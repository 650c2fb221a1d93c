"""What the apps are started with: one frozen object per app instead of long argument lists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.scan import ScanOptions

if TYPE_CHECKING:
    from ..core.scorers import Scorer
    from ..core.store import ModelRow
    from ..core.watch_options import WatchOptions


@dataclass(frozen=True)
class ReviewSettings:
    """The review screen's settings (also those of the review opened from the watch monitor)."""

    blur: bool = True
    """Safe mode: previews of likely-NSFW images are blurred until space reveals them."""
    threshold: float | None = None
    """The threshold the person set (--threshold); None: the active model's own."""
    model_id: str | None = None
    """The model for this run of the screen (--model); None: the active one. Choosing it
    here leaves the store's active model as it is."""
    scan_options: ScanOptions = field(default_factory=ScanOptions)
    scorer_factory: Callable[[ModelRow], Scorer] | None = None
    """Builds the scorer for a model row; None: the registry's `load_scorer` (tests swap it)."""
    image_class: type | None = None
    """The textual-image widget class for previews; None: the one fitting the terminal."""
    train_overrides: tuple[str, ...] = ()
    """``key=value`` overrides applied to the training config."""


@dataclass(frozen=True)
class WatchSettings:
    """A watch run's settings: its scorer, threshold and options, and the review screen's."""

    scorer: Scorer
    threshold: float
    """The threshold in force for the decisions."""
    options: WatchOptions
    log_path: Path | None = None
    """The decision journal (one JSON line per decision); None: no journal."""
    handle_signals: bool = False
    """SIGINT and SIGTERM quit the app (the command's screen; not under tests)."""
    review: ReviewSettings = field(default_factory=ReviewSettings)
