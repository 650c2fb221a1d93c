"""A model's threshold: one way to print it, the one it came with, and the guard on a bad one.

A threshold such as 3.6e-05 printed as `0.0000` in one line and `3.626e-05` in the next reads
as two different values; every line of the CLI and every screen prints it through
`format_threshold`, so a person sees the same number everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `--help` imports this module for format_threshold: it stays light
    from .store import ModelRow, Store


def format_threshold(value: float | None) -> str:
    """`0.2`, `0.001923`, `3.626e-05`: four significant digits, never rounded to zero."""
    return "–" if value is None else f"{value:.4g}"


def registered_threshold(store: Store, row: ModelRow) -> float | None:
    """The threshold ``row`` came with: what `models threshold --reset` goes back to.

    Recorded in the row since this version; for rows registered before, the built-in
    model's own, a run's chosen threshold and an adapted head's fitted one are known from
    elsewhere. None: not known.
    """
    from .scorers import BUILTIN_ID, BUILTIN_THRESHOLD
    from .store import REGISTERED_THRESHOLD

    value: Any = row.meta.get(REGISTERED_THRESHOLD)
    if value is None and row.kind == "builtin" and row.id == BUILTIN_ID:
        value = BUILTIN_THRESHOLD
    run_id = row.meta.get("run_id")
    if value is None and isinstance(run_id, str):
        run = store.run(run_id)
        value = run.threshold if run is not None else None
    if value is None and row.kind == "adapted" and row.path:
        value = _head_threshold(row.path)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


def _head_threshold(path: str) -> Any:
    """The threshold an adapted head's file was fitted with; None when it cannot be read."""
    from .adapt_head import load_head
    from .errors import NsfwTuiError

    try:
        return load_head(path).meta.get("threshold")
    except NsfwTuiError:
        return None


def too_many_false_alarms(metrics: dict[str, Any], max_val_fpr: float) -> float | None:
    """The validation false-positive rate at the chosen threshold when it passes
    ``max_val_fpr`` (a threshold that calls nearly everything NSFW); None when it does not."""
    fpr = metrics.get("val_fpr_at_threshold")
    if isinstance(fpr, int | float) and not isinstance(fpr, bool) and fpr > max_val_fpr:
        return float(fpr)
    return None
