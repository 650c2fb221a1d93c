"""The one decision rule: a person's label outranks the model; unreadable is never safe.

Every face (scan output, watch lines, the review screen, serve, `classify`) decides through
this module, so the threshold rule and the vocabulary of a decision exist once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Call(StrEnum):
    NSFW = "nsfw"
    SFW = "sfw"
    ERROR = "error"  # no probability: unreadable, never counted as safe

    @property
    def prediction(self) -> int | None:
        """The original project's 1 / 0 (None for an error)."""
        return {Call.NSFW: 1, Call.SFW: 0}.get(self)

    @property
    def class_name(self) -> str:
        """The original project's "NSFW" / "SFW" ("" for an error)."""
        return {Call.NSFW: "NSFW", Call.SFW: "SFW"}.get(self, "")


def is_nsfw(probability, threshold: float):
    """The threshold rule, for one probability or an array of them.

    A probability exactly at the threshold counts as NSFW: recall on NSFW comes first.
    """
    if isinstance(probability, float | int):
        return probability >= threshold
    return np.asarray(probability, dtype=float) >= threshold


def model_call(probability: float | None, threshold: float) -> Call:
    """What the model alone says about one image."""
    if probability is None:
        return Call.ERROR
    return Call.NSFW if is_nsfw(probability, threshold) else Call.SFW


@dataclass(frozen=True)
class Decision:
    """A call and what made it: ``human`` / ``import`` (a label), ``model``, or ``error``."""

    call: Call
    source: str

    @property
    def prediction(self) -> int | None:
        return self.call.prediction

    @property
    def class_name(self) -> str:
        return self.call.class_name


def decide(
    probability: float | None,
    threshold: float,
    label: str | None = None,
    label_source: str = "human",
) -> Decision:
    """A label outranks the model; without either, the file needs a person (an error)."""
    if label is not None:
        return Decision(Call(label), label_source)
    call = model_call(probability, threshold)
    return Decision(call, "error" if call is Call.ERROR else "model")


def count_flips(
    before: dict[str, float], before_t: float, after: dict[str, float], after_t: float
) -> dict[str, int]:
    """Calls that changed between two models, over the images both scored."""
    both = [s for s in after if s in before]
    b = is_nsfw([before[s] for s in both], before_t)
    a = is_nsfw([after[s] for s in both], after_t)
    return {"to_nsfw": int((a & ~b).sum()), "to_sfw": int((~a & b).sum()), "compared": len(both)}
