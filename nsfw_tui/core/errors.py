"""The project's error types: each carries one clear line for the person who hit it."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NsfwTuiError(Exception):
    """Base class: str(error) is a complete, user-facing sentence."""


class ConfigError(NsfwTuiError):
    """A config file, key or override value is wrong."""


class StoreError(NsfwTuiError):
    """The label store cannot be opened or written."""


class StoreBusyError(StoreError):
    """Another process held the write lock for longer than the busy timeout."""


class StoreMissingError(StoreError):
    """The home held a store, but store.db is now missing or empty: nothing is recreated."""


class StoreReadOnlyError(StoreError):
    """The store is open read-only (newer schema, or no write permission)."""


# Libraries that only an extra brings: the light install scores without any of them.
EXTRAS = {
    "torch": "train",
    "torchvision": "train",
    "timm": "train",
    "onnxscript": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "mlflow": "mlflow",
    "fastapi": "serve",
    "uvicorn": "serve",
    "av": "video",
    "ray": "scale",
    "pyarrow": "scale",
}


def extra_line(extra: str, module: str, what: str = "this command") -> str:
    """The one line that names the extra to install (the CLI and the TUI say the same)."""
    return (
        f"{what} needs the {extra} extra ({module} is not installed): "
        f"pip install 'nsfw-tui[{extra}]'"
    )


def missing_extra(exc: ModuleNotFoundError, what: str = "this command") -> str | None:
    """``extra_line`` for a library only an extra brings; None for any other missing module."""
    extra = EXTRAS.get((exc.name or "").split(".")[0])
    return None if extra is None else extra_line(extra, exc.name or "", what)


class MissingExtraError(NsfwTuiError):
    """An optional extra (train, serve, mlflow) is not installed."""


def require_extra(extra: str, what: str = "this command") -> None:
    """Refuse up front, before any progress is drawn, when a library of ``extra`` is missing.

    Looks the libraries up without importing them (torch alone takes seconds to import).
    """
    import importlib.util

    for module in ("torch", "torchvision", "timm") if extra == "train" else ():
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra_line(extra, module, what))


class ImageError(NsfwTuiError):
    """A file could not be decoded into pixels.

    ``kind`` is a short reason code (``empty``, ``missing``, ``unreadable``,
    ``unidentified``, ``unsupported``, ``truncated``, ``bomb``, ``corrupt``,
    ``too-many-frames``, ``timeout``, ``crash``, ``refused`` for a path outside what may be
    read); ``reason`` is a readable sentence.
    """

    def __init__(
        self, kind: str, reason: str, sha256: str | None = None, size: int | None = None
    ) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
        # Known when the bytes were read but did not decode: the failure belongs to them.
        self.sha256 = sha256
        self.size = size

    def __reduce__(self):  # keeps the fields across process boundaries
        return (ImageError, (self.kind, self.reason, self.sha256, self.size))


def one_line(exc: BaseException, limit: int = 300) -> str:
    """One readable line for a caught exception, for a message a person reads.

    The project's own errors are complete sentences and keep their text. A library's error
    (torch, onnx, onnxruntime) is followed down its ``__cause__`` chain, where the real reason
    sits (the op an exporter lacks, say), stripped of terminal colours, cut to its first line
    and named by its type.
    """
    while not isinstance(exc, NsfwTuiError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = _ANSI.sub("", str(exc)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if isinstance(exc, NsfwTuiError) and first:
        return first[:limit]
    return (f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:limit]


def plain_line(exc: BaseException, limit: int = 300) -> str:
    """``one_line`` for a toast or a status line: the reason only, never a class name."""
    if isinstance(exc, ModuleNotFoundError) and (line := missing_extra(exc)):
        return line
    while not isinstance(exc, NsfwTuiError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = _ANSI.sub("", str(exc)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or "an unexpected error, with no reason given")[:limit]
