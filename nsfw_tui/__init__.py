"""nsfw-tui: score, review and curate images for NSFW content. `classify` is the Python API."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Classification", "classify"]
__version__ = "0.1.0"


@dataclass(frozen=True)
class Classification:
    """One image's result, in the original project's terms."""

    probability: float
    prediction: int  # 1 NSFW, 0 SFW
    class_name: str  # "NSFW" or "SFW"


def classify(path: str | os.PathLike, *, threshold: float | None = None) -> Classification:
    """Score one image file with the built-in model; no store, no network.

    Raises ``nsfw_tui.core.errors.ImageError`` for a file that cannot be read: an
    unreadable file has no probability and is never reported as safe.
    """
    import numpy as np

    from .core.decision import model_call
    from .core.decode_pool import Failed, decode_path
    from .core.scorers import load_builtin, max_over_frames

    global _scorer
    if _scorer is None:
        _scorer = load_builtin()
    result = decode_path(os.fspath(path), _scorer.preprocessing, use_draft=True, max_frames=8)
    if isinstance(result, Failed):
        raise result.error
    batch = _scorer.score(np.stack(result.pixels))
    prob = max_over_frames(batch.probabilities, [len(result.pixels)])[0]
    thr = _scorer.default_threshold if threshold is None else threshold
    call = model_call(float(prob), thr)
    return Classification(prob, call.prediction, call.class_name)


_scorer = None
