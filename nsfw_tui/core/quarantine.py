"""Quarantine: moving files aside without ever overwriting one, and putting them back."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import shutil
import stat
import uuid

from .errors import NsfwTuiError, StoreError
from .names import path_text
from .store import Store

# link() failures that mean "no hard link from here to there", not "the move failed".
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK)


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


def _free_names(dest: str):
    base, ext = os.path.splitext(dest)
    for n in itertools.count():
        yield dest if n == 0 else f"{base}-{n}{ext}"


def _open_regular(path: str):
    """Open a regular file for reading; OSError for anything else, and a FIFO never blocks."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise OSError(errno.EINVAL, f"{kind}, its bytes cannot be copied")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _copy_to(src: str, target: str, tmp: str) -> None:
    """Copy across file systems: the bytes go to ``tmp`` and are fsynced before the final
    name exists, so a kill never leaves a partial file under ``target``. FileExistsError
    when ``target`` is taken."""
    try:
        with _open_regular(src) as fin, open(tmp, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1024 * 1024)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)
        try:
            os.link(tmp, target)
        except OSError as exc:
            if exc.errno not in _NO_LINK or isinstance(exc, FileExistsError):
                raise
            # No hard links at all there (FAT, some network mounts): claim the name with
            # O_EXCL, then rename the complete copy over our own empty claim.
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            try:
                os.replace(tmp, target)
            except OSError:
                os.unlink(target)
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _place(src: str, target: str, tmp: str) -> None:
    """Move ``src`` to ``target``, never over another file; on failure ``src`` stays put."""
    try:
        os.link(src, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINK or isinstance(exc, FileExistsError):
            raise
        _copy_to(src, target, tmp)
    try:
        os.unlink(src)
    except FileNotFoundError:
        pass  # a recovery (W12) in `release` saw both names and finished the move for us
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(target)  # we made it an instant ago: the file stays where it was
        raise


def move_no_overwrite(src: str, dest: str) -> str:
    """Move ``src`` to ``dest``, or to ``dest-1``, ``dest-2``... : never over another file.

    A hard link fails on an existing name, so no check-then-rename race can overwrite;
    across file systems the copy is linked to its name only once complete.
    """
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    for target in _free_names(dest):
        tmp = os.path.join(os.path.dirname(target), f".nsfw-tui-move-{uuid.uuid4().hex}.tmp")
        try:
            _place(src, target, tmp)
        except FileExistsError:
            continue
        return target
    raise AssertionError("unreachable")


def temp_path(dest: str, move_id: int) -> str:
    """Where a cross-device copy for move ``move_id`` is written before it gets its name."""
    return os.path.join(os.path.dirname(dest), f".nsfw-tui-move-{move_id}.tmp")


def quarantine_move(store: Store, src: str, dest: str, sha256: str | None, reason: str) -> str:
    """Move ``src`` to ``dest`` (or the next free name), recording the move before it (W12).

    The exact target is recorded as intended first, then the file is moved, then the move
    is marked done: a kill anywhere in between leaves an intent that `recover_moves`
    completes or rolls back, so `release` always finds the file.
    """
    if stat.S_ISDIR(os.lstat(src).st_mode):
        # A folder with an image's name: moving it would take files decided on their own.
        raise IsADirectoryError(errno.EISDIR, "a folder is not moved into quarantine", src)
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    for target in _free_names(dest):
        if os.path.lexists(target):
            continue  # no intent for a name that is certainly taken
        move_id = store.intend_move(src, target, sha256, reason)
        try:
            _place(src, target, temp_path(target, move_id))
        except FileExistsError:
            store.abandon_move(move_id)  # taken since the check: the next name
            continue
        except BaseException:
            store.abandon_move(move_id)  # src is where it was
            raise
        _complete(store, move_id, src, target, sha256, reason)
        return target
    raise AssertionError("unreachable")


def _complete(
    store: Store, move_id: int, src: str, dest: str, sha256: str | None, reason: str
) -> None:
    try:
        store.complete_move(move_id)
    except StoreError:
        if any(m.id == move_id for m in store.intended_moves()):
            raise  # a store failure: the next start's recovery completes it
        # A recovery in `release` rolled the intent back while the file was on its way
        # (src still there, dest not yet): the move did happen, so it gets its record.
        store.record_move(src, dest, sha256, reason)


def _digest(path: str) -> str | None:
    try:
        with _open_regular(path) as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _same_file(src: str, dest: str) -> bool:
    try:
        if os.path.samefile(src, dest):
            return True
    except OSError:
        return False
    a = _digest(src)
    return a is not None and a == _digest(dest)


def recover_moves(store: Store) -> tuple[int, int]:
    """Complete or roll back the quarantine moves a kill interrupted (W12).

    Returns (completed, rolled back). Only a file that is certainly a copy of ours (the
    same inode, or the same bytes at the recorded target) is ever deleted.
    """
    completed = abandoned = 0
    for move in store.intended_moves():
        src, dest = move.src, move.dest
        has_src, has_dest = os.path.lexists(src), os.path.lexists(dest)
        done = has_dest and not has_src
        if has_src and has_dest and _same_file(src, dest):
            # Killed between the link (or the linked copy) and the unlink of src.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src)
            done = True
        with contextlib.suppress(OSError):  # before the intent goes: it is what names it
            os.unlink(temp_path(dest, move.id))
        if done:
            store.complete_move(move.id)
            completed += 1
        else:
            # src still there (never moved), dest not ours, or both gone: no move to record.
            store.abandon_move(move.id)
            abandoned += 1
    return completed, abandoned


def release(store: Store, path: str | os.PathLike, *, label: str | None = None) -> tuple[str, str]:
    """Move a quarantined file back where it came from (a free name beside it if taken).

    Returns (where it came from, where it is now) and records the release. ``label``
    ("sfw" or "nsfw") is recorded first, as a person's, so that a running watcher that
    sees the file come back decides by it instead of quarantining it again.
    """
    p = os.path.abspath(os.fspath(path))
    recover_moves(store)  # a watcher killed mid-move left an intent: this file may be it
    move = store.open_move(p)
    if move is None:
        raise NsfwTuiError(f"{path_text(p)} is not a quarantined file (no move recorded)")
    if not os.path.lexists(p):
        raise NsfwTuiError(f"{path_text(p)} is no longer there")
    if label is not None and move.sha256:
        store.set_labels([move.sha256], label)
    origin = move.src if move.dest == p else _escaped_origin(move.src, move.dest, p)
    try:
        back = move_no_overwrite(p, origin)
    except OSError as exc:
        raise NsfwTuiError(f"cannot move {path_text(p)} back: {exc.strerror or exc}") from exc
    store.record_release(move.id, back)
    return origin, back


def _escaped_origin(src: str, dest: str, real: str) -> str:
    """Where a file goes back to when its move was recorded before schema 5 (N1).

    Such a move holds a name that is not UTF-8 as escaped text, ``dest`` being the text of
    ``real``. The quarantine keeps each file's path relative to the watched folder, so the
    trailing parts ``src`` shares with ``dest`` are the same names: they are taken from
    ``real`` byte for byte, and only the part of ``src`` before them stays as recorded.
    """
    src_parts, dest_parts, real_parts = src.split(os.sep), dest.split(os.sep), real.split(os.sep)
    shared = 0
    while (
        shared < min(len(src_parts), len(dest_parts)) - 1
        and src_parts[-1 - shared] == dest_parts[-1 - shared]
    ):
        shared += 1
    if shared == 0 or len(real_parts) != len(dest_parts):
        return src
    return os.sep.join(src_parts[:-shared] + real_parts[-shared:])
