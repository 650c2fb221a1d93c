"""The trainer's error types: each one is a single clear line for the person who hit it."""

from __future__ import annotations

from nsfw_tui.core.errors import ConfigError, NsfwTuiError


class NotEnoughLabelsError(NsfwTuiError):
    """The store holds too few usable labels (none, one class, or too few per class)."""


class ModelConfigError(ConfigError):
    """The model section names an unknown architecture or impossible settings."""


class WeightsUnavailableError(NsfwTuiError):
    """Pretrained weights could not be fetched (no network) or read from model.weights."""


class CheckpointError(NsfwTuiError):
    """A checkpoint is missing, corrupt, truncated, or does not fit its architecture."""


class TrackingError(ConfigError):
    """Experiment tracking (MLflow) was asked for but cannot run."""


class ExportError(NsfwTuiError):
    """An export could not be made or did not pass its own checks; no file was kept."""
