"""The built-in network's cached features, as adaptation reads them from the store."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .adapt_head import DIM, KIND
from .scorers import BUILTIN_ID
from .store import Store


@dataclass
class Features:
    """Cached built-in features: one row per frame, frames of an image together, shas sorted."""

    shas: list[str]
    frames: np.ndarray  # (m, 1024) float16
    owner: np.ndarray  # (m,) index into shas

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=len(self.shas))


def feature_sources(store: Store) -> list[str]:
    """Model ids whose cached features are the built-in network's (its own, adapted models').

    An adapted scorer caches the built-in features it computed under its own id (the scan
    pipeline stores features under the scorer's id); they are the same numbers, so every
    adaptation finds them. The built-in id comes first and wins where both are cached.
    """
    ids = [m.id for m in store.models() if m.kind == KIND and m.id != BUILTIN_ID]
    return [BUILTIN_ID, *ids]


def _images(rows: Iterable[tuple[str, str, bytes]]) -> Iterator[tuple[str, list[bytes]]]:
    """(sha, frame vectors) per image from rows in primary-key order; the built-in's first."""
    for sha, group in itertools.groupby(rows, key=lambda row: row[0]):
        by_model: dict[str, list[bytes]] = {}
        for _, model_id, blob in group:
            if len(blob) == 2 * DIM:  # 1024 float16 values; anything else is not these features
                by_model.setdefault(model_id, []).append(blob)
        if by_model:
            yield sha, by_model.get(BUILTIN_ID) or next(iter(by_model.values()))


def _features(images: Iterable[tuple[str, list[bytes]]]) -> Features:
    shas: list[str] = []
    owner: list[int] = []
    blobs: list[bytes] = []
    for sha, frames in images:
        owner.extend([len(shas)] * len(frames))
        shas.append(sha)
        blobs.extend(frames)
    frames16 = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(-1, DIM)
    return Features(shas, frames16, np.asarray(owner, dtype=np.int64))


def cached_features(store: Store, shas: Sequence[str] | None = None) -> Features:
    """Built-in features of ``shas`` (every cached image when None); images without are left out."""
    return _features(_images(store.feature_rows(feature_sources(store), shas)))


def iter_cached_features(store: Store, chunk: int = 8192) -> Iterator[Features]:
    """Every image with cached built-in features, ``chunk`` images at a time (bounded memory)."""
    images = _images(store.feature_rows(feature_sources(store)))
    while batch := list(itertools.islice(images, chunk)):
        yield _features(batch)


def image_max(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per-image maximum over its frames (frames of an image are contiguous)."""
    starts = np.searchsorted(owner, np.arange(n))
    return np.maximum.reduceat(values, starts, axis=0) if n else values[:0]
