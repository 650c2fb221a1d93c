"""What the store returns and takes: one frozen dataclass per kind of row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .names import key_path
from .structure import CHECK_VERSION


@dataclass(frozen=True)
class FileRow:
    path: str  # as the file system gives it (surrogate escapes for bytes that are not UTF-8)
    sha256: str | None
    size: int
    mtime_ns: int
    error_kind: str | None
    error: str | None
    seen_at: float | None = None  # when a scan last recorded it (only where asked for)
    checked: int = 0  # its image's completeness check version (images.checked, schema 6)

    @property
    def unchecked(self) -> bool:
        """Recorded as whole by a loader with an older completeness check than this one's.

        Its "no error" and the cached predictions of its content are not to be reused: the
        file is read again once (P12). A recorded error stays an error whatever its version.
        """
        return self.error_kind is None and self.checked < CHECK_VERSION


@dataclass(frozen=True)
class ImageRow:
    """An image by content: what decoding learnt about it, and when it was seen."""

    sha256: str
    size: int | None
    width: int | None
    height: int | None
    format: str | None
    n_frames: int | None
    error_kind: str | None
    error: str | None
    first_seen: float | None
    last_seen: float | None
    checked: int = 0  # the loader's completeness check version when it was read (schema 6)


@dataclass(frozen=True)
class MoveRow:
    """A quarantine move: intended, then done; released when the file went back."""

    id: int
    sha256: str | None
    src: str
    dest: str
    reason: str | None
    moved_at: float
    released_at: float | None
    released_to: str | None
    state: str


@dataclass(frozen=True)
class LabelledFile:
    """An image's current label with the absolute path it was last seen at (None: unknown)."""

    path: str | None
    sha256: str
    label: str
    source: str
    created_at: float


@dataclass(frozen=True)
class LabelEvent:
    id: int
    sha256: str
    label: str | None
    source: str
    batch: str | None
    created_at: float


@dataclass(frozen=True)
class LabelBatch:
    """One label batch: the events one action appended (an import, a key on the screen)."""

    batch: str
    source: str
    created_at: float
    size: int


@dataclass(frozen=True)
class LabelChange:
    """What undoing a batch does to one image: its label now, and the one it gets back."""

    sha256: str
    path: str | None
    current: str | None
    restored: str | None


@dataclass(frozen=True)
class ModelRow:
    id: str
    kind: str
    path: str | None
    threshold: float
    metrics: dict[str, Any]
    preprocessing: dict[str, Any] | None
    meta: dict[str, Any]
    created_at: float
    active: bool


@dataclass(frozen=True)
class ScoreRecord:
    """Everything one scored (or failed) file adds to the store."""

    path: str
    size: int
    mtime_ns: int
    sha256: str | None
    probability: float | None = None
    model_id: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    n_frames: int | None = None
    features: np.ndarray | None = None  # (frames, dim) float
    frame_time: float | None = None  # a video: the time of its highest-scoring frame
    error_kind: str | None = None
    error: str | None = None
    # The completeness check version (structure.CHECK_VERSION) of the loader that produced
    # this record. 0, the default, claims nothing: the image is read again before its
    # prediction or its "no error" is reused. With an error, a version says the loader
    # refused the content itself, and the content's cached predictions and features go.
    checked: int = 0


@dataclass(frozen=True)
class RunRow:
    """A training run: its config, per-epoch metrics and outcome, JSON fields parsed."""

    id: str
    created_at: float | None
    finished_at: float | None
    status: str | None
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    metrics: dict[str, Any]
    best_epoch: int | None
    threshold: float | None
    counts: dict[str, Any]
    message: str
    checkpoint: str | None
    model_id: str | None
    val_hashes: list[str] = field(default_factory=list)


class FeatureRow(NamedTuple):
    """One frame's cached pooled features, as stored (float16 bytes)."""

    sha256: str
    model_id: str
    vector: bytes


def file_row(r: dict) -> FileRow:
    """A files row with its stored key turned back into the path it stands for."""
    return FileRow(**{**r, "path": key_path(r["path"])})


def move_row(r: dict) -> MoveRow:
    """A moves row with its stored keys turned back into the paths they stand for."""
    released = r["released_to"]
    return MoveRow(
        **{
            **r,
            "src": key_path(r["src"]),
            "dest": key_path(r["dest"]),
            "released_to": None if released is None else key_path(released),
        }
    )


def model_row(r: dict) -> ModelRow:
    return ModelRow(
        id=r["id"],
        kind=r["kind"],
        path=r["path"],
        threshold=r["threshold"],
        metrics=json.loads(r["metrics"] or "{}"),
        preprocessing=json.loads(r["preprocessing"]) if r["preprocessing"] else None,
        meta=json.loads(r["meta"] or "{}"),
        created_at=r["created_at"],
        active=bool(r["active"]),
    )


def run_row(row: dict[str, Any]) -> RunRow:
    def load(text: str | None, default: Any) -> Any:
        try:
            return json.loads(text) if text else default
        except ValueError:  # a damaged JSON field costs that field, not the listing
            return default

    summary = load(row["metrics"], {})
    return RunRow(
        id=row["id"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        status=row["status"],
        config=load(row["config"], {}),
        epochs=load(row["epochs"], []),
        metrics=summary.get("metrics", {}),
        best_epoch=summary.get("best_epoch"),
        threshold=summary.get("threshold"),
        counts=summary.get("counts", {}),
        message=summary.get("message", ""),
        checkpoint=row["checkpoint"],
        model_id=row["model_id"],
        val_hashes=load(row["val_hashes"], []),
    )
