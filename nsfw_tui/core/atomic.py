"""The one way files are written: whole or not at all, never half a file under the final name."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside ``path``; when the block ends cleanly it replaces ``path``.

    For writers that want a file name (onnx.save, numpy, matplotlib). The temporary file is
    in the same folder, so the final rename is atomic; it is fsynced first, so a power cut
    leaves the old file or the new one. On any error the temporary file is removed.
    """
    path = Path(path)
    # Not mkstemp: its 0600 mode would stick to exported files; a random name is unique
    # enough, and the writer creates the file with the usual permissions.
    tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8", newline=None
) -> Iterator[IO]:
    """An open file whose content replaces ``path`` only once the block ends cleanly."""
    binary = "b" in mode
    with (
        atomic_path(path) as tmp,
        open(
            tmp, mode, encoding=None if binary else encoding, newline=None if binary else newline
        ) as fh,
    ):
        yield fh


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)
