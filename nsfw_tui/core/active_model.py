"""The active model in words: the CLI's `active model: X -> Y` lines and the review screen's.

The active model decides every call a person sees, so a change to it is never silent: each
command that may switch or retune it prints one of these lines, and the review screen names
it (with, for an adapted head, the labels it learnt from) whenever a folder opens.
"""

from __future__ import annotations

from .store import ModelRow
from .thresholds import format_threshold


def fitted_labels(row: ModelRow | None) -> dict[str, int] | None:
    """NSFW / SFW label counts an adapted head was fitted on; None for any other model."""
    if row is None or row.kind != "adapted":
        return None
    labels = row.meta.get("labels")
    if not isinstance(labels, dict):
        return None  # registered from a file written before heads recorded it
    return {c: int(labels.get(c, 0)) for c in ("nsfw", "sfw")}


def labels_note(labels: dict[str, int] | None) -> str:
    """`fitted on 36 labels (12 NSFW, 24 SFW)`, or "" when the count is unknown."""
    if not labels:
        return ""
    n = labels["nsfw"] + labels["sfw"]
    return f"fitted on {n} label{'s' * (n != 1)} ({labels['nsfw']} NSFW, {labels['sfw']} SFW)"


def switch_line(before_id: str | None, after_id: str, labels: dict[str, int] | None = None) -> str:
    """`active model: open_nsfw -> adapted-1a2b3c, fitted on 36 labels (12 NSFW, 24 SFW)`."""
    note = labels_note(labels)
    after = f"{after_id}, {note}" if note else after_id
    if before_id == after_id:
        return f"active model: {after} (unchanged)"
    return f"active model: {before_id or 'none'} -> {after}"


def change_line(before: ModelRow | None, after: ModelRow | None) -> str:
    """What a command that may change the active model prints once it is done.

    A new threshold on the same model changes its calls as much as a new model does, so it
    counts as a change too (that is what `calibrate` on the active model does).
    """
    if after is None:
        return "active model: none"
    if before is not None and before.id == after.id and before.threshold != after.threshold:
        return (
            f"active model: {after.id} -> {after.id} "
            f"(threshold {format_threshold(before.threshold)} -> "
            f"{format_threshold(after.threshold)})"
        )
    return switch_line(before.id if before else None, after.id, fitted_labels(after))
