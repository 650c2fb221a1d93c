"""The watcher's options (from `watch:` in the config) and the figures it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from .config_rules import Range, setting
from .config_schema import WatchConfig


@dataclass
class WatchOptions(WatchConfig):
    """The `watch:` settings (defaults and rules in core/config_schema.py) and a few knobs that
    only code and tests set. Building one, or calling ``check()``, applies every rule."""

    poll_interval_s: float = setting(1.0, Range(0, low_open=True))
    """Seconds between snapshots of the polling observer."""
    supervise_interval_s: float = setting(1.0, Range(0, low_open=True))
    """How often the observer's threads are checked (and restarted when dead)."""
    probe_wait_s: float = setting(2.0, Range(0, low_open=True))
    """Seconds a probe file's event may take before native events count as not arriving."""
    max_batch: int = setting(256, Range(1))
    """Most settled files handed to one `scan_files` call."""
    pattern: str | None = None
    """Glob the file names must match (`scan.pattern`); None: every image type."""

    @classmethod
    def from_config(cls, node: Any, scan: Any = None, **extra: Any) -> Self:
        """From the loaded `watch:` section; the file-name pattern comes from `scan:`."""
        pattern = (scan.pattern or None) if scan is not None else None
        return super().from_config(node, pattern=pattern, **extra)


@dataclass
class WatchStats:
    seen: int = 0  # decisions logged
    nsfw: int = 0
    sfw: int = 0
    errors: int = 0
    quarantined: int = 0  # moved, or (dry run) would have been
    scored: int = 0  # model inferences
    cached: int = 0  # decisions on a probability the store already held (no inference)
    labelled: int = 0  # decisions a label made (a label outranks the model)
    pending: int = 0  # candidates settling plus settled files waiting for the model
    rescans: int = 0
    restarts: int = 0
    overflows: int = 0
    paused: bool = False
    polling: bool = False  # polling, as asked or because native events fell short
    rate: float = 0.0  # decisions per second over the last few seconds
