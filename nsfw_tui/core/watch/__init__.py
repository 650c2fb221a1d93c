"""Watch a folder: events as hints, a settle gate, rescans, one scoring thread, quarantine."""

# How the parts fit (the cases they answer are W1-W15 in docs/reliability.md). watchdog
# events only add candidates (observer.py): inotify drops events on overflow, and a closed
# event is not "finished" (renames never close, slow uploaders close many times). A
# candidate is handed to the model once its (size, mtime_ns) has stayed unchanged for
# `settle_s` (settle.py); a full rescan at start, every `rescan_interval_s`, on an overflow
# warning and after an observer restart closes any gap the events left (rescan.py). Where
# native events do not cover the tree (a watch refused at the inotify limit, a probe file
# whose event never comes, a network or FUSE mount), the watch polls instead and says so
# (coverage.py).
# Scoring goes through the one pipeline, `scan_files`, whose cache makes every step
# idempotent (scoring.py); each decision is made, acted on and told once (decide.py, with
# the exactly-once log in log.py). watcher.py composes these and owns the threads.

from ..quarantine import move_no_overwrite, quarantine_folder, release
from ..watch_options import WatchOptions, WatchStats
from .scope import TEMPORARY_SUFFIXES, is_temporary
from .settle import RETRYABLE
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
