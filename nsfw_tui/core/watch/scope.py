"""Which paths the watcher looks at, and the (size, mtime_ns) key that says a file changed."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..images import is_media_name
from ..walk import WalkIssue, walk_images

Key = tuple[int, int]  # (size, mtime_ns)

# Names that a downloader or uploader writes before its final rename.
TEMPORARY_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", "~")


def is_temporary(name: str) -> bool:
    """Dot-files and partial-download names: they wait for their final rename."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def file_key(path: str) -> Key | None:
    """(size, mtime_ns) of a regular file; None when it is gone or not a file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def entry_key(path: str) -> Key | None:
    """``file_key`` for a regular file; (0, 0) for any other entry that is there (a FIFO, a
    folder, a dangling link: what it holds does not change its line); None when it is gone.
    """
    key = file_key(path)
    if key is not None:
        return key
    try:
        os.lstat(path)
    except (OSError, ValueError):
        return None
    return (0, 0)


@dataclass(frozen=True)
class Scope:
    """The watched folder less its quarantine, hidden and temporary names; ``pattern`` narrows
    it to matching names, else to image types."""

    root: str
    quarantine: str | None = None
    pattern: str | None = None

    def _in_quarantine(self, path: str) -> bool:
        q = self.quarantine
        return bool(q) and (path == q or path.startswith(q + os.sep))

    def wanted(self, path: str) -> bool:
        if self._in_quarantine(path):
            return False
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return False
        parts = rel.split(os.sep)
        if any(p.startswith(".") for p in parts[:-1]) or is_temporary(parts[-1]):
            return False
        if self.pattern:
            return fnmatch.fnmatch(parts[-1].lower(), self.pattern.lower())
        return is_media_name(parts[-1])

    def wanted_dir(self, folder: str) -> bool:
        if self._in_quarantine(folder):
            return False
        rel = os.path.relpath(folder, self.root)
        return not rel.startswith("..") and not any(p.startswith(".") for p in rel.split(os.sep))

    def walk(self, errors: list[WalkIssue] | None = None) -> dict[str, Key]:
        """Every wanted file under the root with its key (a rescan's view of the folder).

        Wanted entries that are not regular files (a FIFO, a folder or a dangling link with
        an image's name) are in it too, to be decided as errors (N2); ``errors`` gets the
        walk's other issues (folders that cannot be listed or hold themselves).
        """
        issues: list[WalkIssue] = []
        found: dict[str, Key] = {}
        for path in walk_images(self.root, pattern=self.pattern, errors=issues):
            if self.wanted(path) and (key := file_key(path)) is not None:
                found[path] = key
        for issue in issues:
            if self.wanted(issue.path) and (key := entry_key(issue.path)) is not None:
                found[issue.path] = key
            elif errors is not None and not self._in_quarantine(issue.path):
                errors.append(issue)
        return found

    def tree(self, folder: str) -> Iterator[str]:
        """The entries under a folder that was moved in or created: they bring no events."""
        if os.path.isdir(folder) and (folder == self.root or self.wanted_dir(folder)):
            issues: list[WalkIssue] = []
            yield from walk_images(folder, pattern=self.pattern, errors=issues)
            yield from (i.path for i in issues if self.wanted(i.path))
