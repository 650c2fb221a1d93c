"""The folder walk: every entry it meets is a file to score or an issue with its reason (N2)."""

# A moderation tool must not let anything pass unseen: a FIFO, a socket or a folder named like
# an image, a symlink loop, a dangling link or a folder that cannot be listed is not an image
# to score, but it is not nothing either. The walk yields the regular files and reports every
# other entry as a `WalkIssue`, which scan, the review screen and watch turn into an error row
# or line; `check_path` gives the same reasons for a path handed over on its own. Neither ever
# opens what it looks at: a FIFO opened for reading blocks until a writer comes.

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterator
from typing import NamedTuple

from .images import is_media_name

Problem = tuple[str, str]  # (error kind, reason), as a failed decode reports them


class WalkIssue(NamedTuple):
    """An entry the walk met that is not a readable image file."""

    path: str  # as the file system gives it (surrogate escapes for bytes that are not UTF-8)
    kind: str  # "unreadable" or "missing", the kinds a failed read reports
    reason: str  # "not a regular file (a FIFO)", "symlink loop", "permission denied", ...


def _what(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "of an unknown type"


def _os_problem(path: str, exc: OSError) -> Problem:
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return "missing", "dangling symbolic link"
        return "missing", "file not found"
    if exc.errno == errno.ELOOP:
        return "unreadable", "symlink loop"
    if isinstance(exc, PermissionError):
        return "unreadable", "permission denied"
    return "unreadable", exc.strerror or str(exc)


def _holds_itself(path: str) -> bool:
    """A folder reached through a link to the folder that holds it, or one above that."""
    real = os.path.realpath(path)
    parent = os.path.realpath(os.path.dirname(path))
    return parent == real or parent.startswith(real.rstrip(os.sep) + os.sep)


def check_path(path: str) -> tuple[os.stat_result | None, Problem | None]:
    """``os.stat`` of a path and, when it is not a regular file, why (kind, reason).

    Never opens the path. A regular file may still fail to read (permission denied shows
    only on open): that is the decoder's to say.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, _os_problem(path, exc)
    except ValueError:  # a NUL byte in the name
        return None, ("unreadable", "invalid file name")
    if stat.S_ISREG(st.st_mode):
        return st, None
    if stat.S_ISDIR(st.st_mode) and _holds_itself(path):
        return st, ("unreadable", "symlink loop")
    return st, ("unreadable", f"not a regular file ({_what(st.st_mode)})")


def matches(name: str, pattern: str | None) -> bool:
    """Whether a name is one the walk looks at: the pattern's, else an image or video suffix."""
    if pattern:
        return fnmatch.fnmatch(name.lower(), pattern.lower())
    return is_media_name(name)


def walk_images(
    root: str | os.PathLike,
    *,
    pattern: str | None = None,
    recursive: bool = True,
    errors: list[WalkIssue] | None = None,
) -> Iterator[str]:
    """Regular files under ``root`` whose names match, in name order; dot-files skipped.

    Everything else the walk meets goes into ``errors``: entries with a matching name that
    are not regular files (FIFOs, sockets, devices, folders, dangling links, link loops), and,
    whatever their names, folders that hold themselves through a link and folders that
    cannot be listed. A second link to a folder already walked is not walked again: its
    files were reported under the first.
    """
    errors = errors if errors is not None else []
    # Absolute and normalised, symlinks kept as given: stored paths never depend on the
    # directory a command ran from (S16).
    root = os.path.abspath(os.fspath(root))
    seen: set[tuple[int, int]] = set()
    # (folder, the folders above it, whether its own name matches)
    stack: list[tuple[str, frozenset[tuple[int, int]], bool]] = [(root, frozenset(), False)]
    while stack:
        folder, above, named = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            errors.append(WalkIssue(folder, *_os_problem(folder, exc)))
            continue
        key = (st.st_dev, st.st_ino)
        if key in above:
            errors.append(WalkIssue(folder, "unreadable", "symlink loop"))
            continue
        if named:
            errors.append(WalkIssue(folder, "unreadable", "not a regular file (a folder)"))
        if key in seen:
            continue  # a second link to a folder already walked
        seen.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            kind, why = _os_problem(folder, exc)
            errors.append(WalkIssue(folder, kind, f"cannot list folder: {why}"))
            continue
        inside = above | {key}
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            wanted = matches(entry.name, pattern)
            try:
                # From the directory listing itself, no stat: the common case stays cheap.
                if not entry.is_symlink() and entry.is_file():
                    if wanted:
                        yield entry.path
                    continue
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False  # check_path below says why
            if is_dir and recursive:
                subdirs.append((entry.path, inside, wanted))
                continue
            if not wanted:
                continue
            _, problem = check_path(entry.path)
            if problem is None:
                yield entry.path  # a link to a regular file
            else:
                errors.append(WalkIssue(entry.path, *problem))
        stack.extend(reversed(subdirs))
