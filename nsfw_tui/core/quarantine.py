"""Quarantine: moving files aside without ever overwriting one, and putting them back."""

from __future__ import annotations

import errno
import itertools
import os
import shutil

from .errors import NsfwTuiError
from .store import Store, path_text


def quarantine_folder(root: str | os.PathLike, quarantine: str | os.PathLike | None) -> str | None:
    """The absolute quarantine folder; it may lie inside the watched folder (it is then not
    watched), but not be it or hold it."""
    if not quarantine:
        return None
    q = os.path.abspath(os.fspath(quarantine))
    r = os.path.abspath(os.fspath(root))
    if q == r or r.startswith(q + os.sep):
        raise NsfwTuiError("the quarantine folder must not be the watched folder or above it")
    if os.path.exists(q) and not os.path.isdir(q):
        raise NsfwTuiError(f"the quarantine path {path_text(q)} is not a folder")
    return q


def move_no_overwrite(src: str, dest: str) -> str:
    """Move ``src`` to ``dest``, or to ``dest-1``, ``dest-2``... : never over another file.

    A hard link fails on an existing name, so no check-then-rename race can overwrite;
    across file systems the copy opens its target with O_EXCL for the same reason.
    """
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    base, ext = os.path.splitext(dest)
    for n in itertools.count():
        target = dest if n == 0 else f"{base}-{n}{ext}"
        try:
            os.link(src, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            try:
                with open(src, "rb") as fin, open(target, "xb") as fout:
                    shutil.copyfileobj(fin, fout, 1024 * 1024)
                    fout.flush()
                    os.fsync(fout.fileno())
            except FileExistsError:
                continue
            shutil.copystat(src, target)
        os.unlink(src)
        return target
    raise AssertionError("unreachable")


def release(store: Store, path: str | os.PathLike, *, label: str | None = None) -> tuple[str, str]:
    """Move a quarantined file back where it came from (a free name beside it if taken).

    Returns (where it came from, where it is now) and records the release. ``label``
    ("sfw" or "nsfw") is recorded first, as a person's, so that a running watcher that
    sees the file come back decides by it instead of quarantining it again.
    """
    p = os.path.abspath(os.fspath(path))
    move = store.open_move(path_text(p))
    if move is None:
        raise NsfwTuiError(f"{path_text(p)} is not a quarantined file (no move recorded)")
    if not os.path.lexists(p):
        raise NsfwTuiError(f"{path_text(p)} is no longer there")
    if label is not None and move["sha256"]:
        store.set_labels([move["sha256"]], label)
    try:
        back = move_no_overwrite(p, move["src"])
    except OSError as exc:
        raise NsfwTuiError(f"cannot move {path_text(p)} back: {exc.strerror or exc}") from exc
    store.record_release(move["id"], path_text(back))
    return move["src"], path_text(back)
