"""Messages that workers post to the UI thread (past-tense events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image
from textual.message import Message

from ..core.review import Review
from ..core.scan import ScanItem

if TYPE_CHECKING:  # the review screen needs no watcher (watchdog) to load
    from ..core.watch import WatchStats


@dataclass
class ReviewLoaded(Message):
    review: Review
    pending: list[str]
    model_name: str
    fitted: dict[str, int] | None = None  # NSFW / SFW labels of an adapted active model
    remote: int = 0  # scored files known only by a URI or a shard member (import-scores)


@dataclass
class ScoresReady(Message):
    items: list[ScanItem]


@dataclass
class ScoringProgressed(Message):
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ScoringProgressed)


@dataclass
class ScoringFinished(Message):
    scored: int
    cancelled: bool


@dataclass
class PreviewReady(Message):
    path: str
    image: Image.Image | None
    blurred: Image.Image | None
    error: str | None
    details: dict


@dataclass
class LabelsSaved(Message):
    """The store now holds these current labels; ``batch`` undoes the change."""

    labels: dict[str, str | None]
    batch: str | None
    undo: bool = False
    hashed: dict[str, str] | None = None  # path -> sha256 learnt while labelling


@dataclass
class LabelsFailed(Message):
    paths: list[str]
    reason: str


class UndoEmpty(Message):
    """Undo was asked for with no label change of this session left to undo."""


@dataclass
class StoreBusy(Message):
    seconds: float
    waiting: int = 0  # labels queued behind the busy store


@dataclass
class TrainingProgressed(Message):
    event: object  # trainer.fit.TrainEvent; typed loosely so the UI needs no torch import


@dataclass
class TrainingFinished(Message):
    result: object  # trainer.run.RunResult
    active_id: str
    new: dict  # recall, precision, accuracy, auroc, threshold on the images compared
    active: dict  # the same for the model that was active, on the same images
    compared: int = 0  # the run's validation images the active model was not fitted on either
    why: str = ""  # why the two cannot be compared (then ``new`` is on every validation image)


# -- the watch monitor ----------------------------------------------------------------


@dataclass
class DecisionLogged(Message):
    decision: dict


@dataclass
class WatchCounted(Message):
    stats: WatchStats

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WatchCounted)


@dataclass
class WatchNoticed(Message):
    text: str
