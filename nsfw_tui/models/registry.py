"""Turns a model id from the store into a scorer of any kind; the one place that knows them all."""

from __future__ import annotations

import os
from pathlib import Path

from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.preprocess import OPEN_NSFW, Preprocessing
from nsfw_tui.core.scorers import (
    BUILTIN_ID,
    BUILTIN_THRESHOLD,
    AdaptedScorer,
    LazyScorer,
    OnnxScorer,
    Scorer,
    ensure_builtin,
    load_builtin,
)
from nsfw_tui.core.store import ModelRow, Store

from .torch_edge import checkpoint_scorer

_builtin_cache: dict[tuple[int | None, str | None], OnnxScorer] = {}


def resolve_model(store: Store, model_id: str | None = None) -> ModelRow:
    """The named model, else the active one (registering the built-in model on first use)."""
    ensure_builtin(store)
    if model_id:
        row = store.model(model_id)
        if row is None:
            known = ", ".join(m.id for m in store.models()) or "none"
            raise NsfwTuiError(f"no model with id {model_id!r} (known: {known})")
        return row
    row = store.active_model() or store.model(BUILTIN_ID)
    if row is None:  # a read-only store that never saw the built-in model
        return ModelRow(BUILTIN_ID, "builtin", None, 0.2, {}, None, {}, 0.0, True)
    return row


def _builtin(threads: int | None, cache_dir: str | os.PathLike | None) -> OnnxScorer:
    key = (threads, os.fspath(cache_dir) if cache_dir else None)
    if key not in _builtin_cache:
        _builtin_cache[key] = load_builtin(threads, cache_dir)
    return _builtin_cache[key]


def load_scorer(
    row: ModelRow, *, threads: int | None = None, cache_dir: str | os.PathLike | None = None
) -> Scorer:
    """A scorer for the model row; heavy libraries load only for the kinds that need them.

    ONNX-based scorers come back lazy: their session is created on the first batch, so a
    scan that answers everything from the cache creates none. What can be checked without
    loading (files present, preprocessing recorded) is checked now, so a missing model
    still fails before any work. ``cache_dir`` keeps the prepared built-in graph.
    """
    if row.kind == "builtin":
        return LazyScorer(
            BUILTIN_ID, OPEN_NSFW, BUILTIN_THRESHOLD, lambda: _builtin(threads, cache_dir)
        )
    if row.kind == "adapted":
        from nsfw_tui.core.adapt import load_head

        if not row.path:
            raise NsfwTuiError(f"model {row.id!r} has no head file recorded")
        head = load_head(row.path)
        return LazyScorer(
            row.id,
            OPEN_NSFW,
            row.threshold,
            lambda: AdaptedScorer(row.id, head, _builtin(threads, cache_dir), row.threshold),
        )
    if row.kind == "onnx":
        if not row.path or not Path(row.path).is_file():
            raise NsfwTuiError(f"the ONNX file of model {row.id!r} is missing: {row.path}")
        if not row.preprocessing:
            raise NsfwTuiError(f"model {row.id!r} has no preprocessing recorded")
        pre = Preprocessing.from_dict(row.preprocessing)
        return LazyScorer(
            row.id,
            pre,
            row.threshold,
            lambda: OnnxScorer(
                row.id,
                row.path,
                pre,
                output=row.meta.get("output", "probability"),
                default_threshold=row.threshold,
                threads=threads,
            ),
        )
    if row.kind == "checkpoint":
        return checkpoint_scorer(row)  # torch loads there and only there
    raise NsfwTuiError(f"model {row.id!r} is of kind {row.kind!r}, which this version cannot load")
