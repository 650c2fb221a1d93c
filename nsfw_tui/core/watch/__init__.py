"""Watch a folder: events as hints, a settle gate, rescans, one scoring thread, quarantine."""

from ..quarantine import move_no_overwrite, quarantine_folder, release
from ..watch_options import WatchOptions, WatchStats
from .events import RETRYABLE, TEMPORARY_SUFFIXES, is_temporary
from .watcher import Watcher

__all__ = [
    "RETRYABLE",
    "TEMPORARY_SUFFIXES",
    "WatchOptions",
    "WatchStats",
    "Watcher",
    "is_temporary",
    "move_no_overwrite",
    "quarantine_folder",
    "release",
]
