"""The watcher's options (from `watch:` in the config) and the figures it reports."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NsfwTuiError


@dataclass
class WatchOptions:
    settle_s: float = 2.0
    """Seconds a file's size and mtime must stay unchanged before it is scored."""
    rescan_interval_s: float = 300.0
    """Full rescan period, to catch events the file system never delivered."""
    quarantine: str | None = None
    """Folder NSFW and unreadable files are moved to (None: only log)."""
    dry_run: bool = False
    """Log the quarantine action without moving anything."""
    polling: bool = False
    """Poll the file system (network and bind mounts) instead of inotify."""
    catch_up: bool = True
    """Score the files already in the folder that the store has not scored."""
    never_settles_timeout_s: float = 120.0
    """A file still changing, or still failing to decode, after this long is an error."""
    poll_interval_s: float = 1.0
    """Seconds between snapshots of the polling observer."""
    supervise_interval_s: float = 1.0
    """How often the observer's threads are checked (and restarted when dead)."""
    max_batch: int = 256
    """Most settled files handed to one `scan_files` call."""
    pattern: str | None = None
    """Glob the file names must match; None: every image type."""

    @classmethod
    def from_config(cls, watch, scan=None) -> WatchOptions:
        return cls(
            settle_s=float(watch.settle_s),
            rescan_interval_s=float(watch.rescan_interval_s),
            quarantine=str(watch.quarantine) if watch.quarantine else None,
            dry_run=bool(watch.dry_run),
            polling=bool(watch.polling),
            catch_up=bool(watch.catch_up),
            never_settles_timeout_s=float(watch.never_settles_timeout_s),
            pattern=(scan.pattern or None) if scan is not None else None,
        )

    def check(self) -> None:
        for name in ("settle_s", "rescan_interval_s", "never_settles_timeout_s", "poll_interval_s"):
            if not getattr(self, name) > 0:
                raise NsfwTuiError(f"watch.{name} must be above 0, got {getattr(self, name)}")
        if self.never_settles_timeout_s < self.settle_s:
            raise NsfwTuiError("watch.never_settles_timeout_s must be at least watch.settle_s")


@dataclass
class WatchStats:
    seen: int = 0  # decisions logged
    nsfw: int = 0
    sfw: int = 0
    errors: int = 0
    quarantined: int = 0  # moved, or (dry run) would have been
    scored: int = 0  # model inferences
    pending: int = 0  # candidates settling plus settled files waiting for the model
    rescans: int = 0
    restarts: int = 0
    overflows: int = 0
    paused: bool = False
    rate: float = 0.0  # decisions per second over the last few seconds
