"""The one way from a model row to torch: a checkpoint trained here, scored by PyTorch.

Everything else in this package scores without torch. The trainer is imported inside the
function, so torch loads only when a checkpoint model is actually used; the layering contracts
in pyproject.toml name this import as their single exception.
"""

from __future__ import annotations

from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.scorers import Scorer
from nsfw_tui.core.store import ModelRow


def checkpoint_scorer(row: ModelRow) -> Scorer:
    """A PyTorch scorer for ``row`` (kind ``checkpoint``); torch and timm load here."""
    if not row.path:
        raise NsfwTuiError(f"model {row.id!r} has no checkpoint path recorded")
    from trainer.checkpoint import CheckpointScorer

    return CheckpointScorer(row.path, model_id=row.id, threshold=row.threshold)
