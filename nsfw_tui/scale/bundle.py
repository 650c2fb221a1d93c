"""A model as the Ray workers get it: ONNX bytes and the preprocessing that rebuilds its input."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsfw_tui.core.adapt import load_head
from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.preprocess import OPEN_NSFW, Preprocessing
from nsfw_tui.core.scorers import (
    BUILTIN_FEATURES,
    BUILTIN_ID,
    BUILTIN_THRESHOLD,
    AdaptedScorer,
    OnnxScorer,
    Scorer,
    prepared_builtin,
)
from nsfw_tui.core.store import ModelRow


@dataclass(frozen=True)
class ModelBundle:
    """Everything a worker needs to score like a local scan, with nothing read from disk.

    An adapted model travels as the built-in graph and its head's weights (the same numbers
    the local scan uses), not as its exported graph, whose float16 features round differently.
    """

    model_id: str
    onnx: bytes
    preprocessing: dict[str, Any]
    output: str
    feature_output: str | None
    threshold: float
    head: Any = None  # core.adapt_head.Head for an adapted model

    @property
    def has_features(self) -> bool:
        return self.feature_output is not None

    def scorer(self, threads: int | None = 1) -> Scorer:
        pre = Preprocessing.from_dict(self.preprocessing)
        if self.head is None:
            return OnnxScorer(
                self.model_id,
                self.onnx,
                pre,
                output=self.output,
                feature_output=self.feature_output,
                default_threshold=self.threshold,
                threads=threads,
            )
        base = OnnxScorer(
            BUILTIN_ID,
            self.onnx,
            pre,
            output="softmax2",
            feature_output=BUILTIN_FEATURES,
            default_threshold=BUILTIN_THRESHOLD,
            threads=threads,
        )
        return AdaptedScorer(self.model_id, self.head, base, self.threshold)


def _builtin_bytes(cache_dir: str | os.PathLike | None) -> bytes:
    prepared = prepared_builtin(cache_dir)
    return prepared.read_bytes() if isinstance(prepared, Path) else prepared


def bundle_for(row: ModelRow, cache_dir: str | os.PathLike | None = None) -> ModelBundle:
    """The bundle of a store's model row; a model that cannot travel says what to do instead."""
    if row.kind == "builtin":
        return ModelBundle(
            row.id,
            _builtin_bytes(cache_dir),
            OPEN_NSFW.to_dict(),
            "softmax2",
            BUILTIN_FEATURES,
            row.threshold,
        )
    if row.kind == "adapted":
        if not row.path:
            raise NsfwTuiError(f"model {row.id!r} has no head file recorded")
        return ModelBundle(
            row.id,
            _builtin_bytes(cache_dir),
            OPEN_NSFW.to_dict(),
            "probability",
            BUILTIN_FEATURES,
            row.threshold,
            head=load_head(row.path),
        )
    if row.kind == "onnx":
        if not row.path or not Path(row.path).is_file():
            raise NsfwTuiError(f"the ONNX file of model {row.id!r} is missing: {row.path}")
        if not row.preprocessing:
            raise NsfwTuiError(f"model {row.id!r} has no preprocessing recorded")
        return ModelBundle(
            row.id,
            Path(row.path).read_bytes(),
            dict(row.preprocessing),
            row.meta.get("output", "probability"),
            None,
            row.threshold,
        )
    if row.kind == "checkpoint":
        raise NsfwTuiError(
            f"model {row.id!r} is a PyTorch checkpoint, which the Ray engine does not ship; "
            f"export it (nsfw-tui export --onnx --model {row.id}), add the file "
            "(nsfw-tui models add FILE.onnx) and scan with that model"
        )
    raise NsfwTuiError(f"model {row.id!r} is of kind {row.kind!r}, which this version cannot load")
