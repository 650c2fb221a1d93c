"""Path confinement for the REST face: everything a request names must stay under the root."""

from __future__ import annotations

import errno
import os
import stat

from ..core.errors import ImageError
from ..core.images import MAX_FILE_BYTES

MiB = 1024 * 1024
MAX_PATH_CHARS = 4096


class Refused(Exception):
    """A request refused as a whole: an HTTP status and one clear sentence."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([root, path]) == root


def resolve_under_root(raw: object, root: str | None, index: int) -> str:
    """The real path ``raw`` names under ``root`` (itself real).

    Symbolic links are resolved before the check, so a link out of the root is refused;
    absolute paths are accepted only when they lie under the root. A malformed entry (not
    a string, a NUL byte, too long) or a server without a root refuses the whole request
    (Refused); a path outside the root or one that cannot be resolved is that item's error
    only (ImageError), as a missing file is.
    """
    where = f"inputs[{index}]"
    if root is None:
        raise Refused(
            403,
            "this server reads no paths: it was started without --root; send the image bytes "
            "(multipart upload or {'images': [base64, ...]}) or restart with --root DIR",
        )
    if not isinstance(raw, str) or not raw:
        raise Refused(400, f"{where} must be a non-empty string")
    if "\x00" in raw:
        raise Refused(400, f"{where} contains a NUL byte")
    if len(raw) > MAX_PATH_CHARS:
        raise Refused(400, f"{where} is longer than {MAX_PATH_CHARS} characters")
    try:
        real = os.path.realpath(os.path.join(root, raw))
        inside = _under(real, root)
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, unencodable surrogates
        raise ImageError("unreadable", f"cannot resolve the path: {_oserror_text(exc)}") from None
    if not inside:
        raise ImageError("refused", "outside the served root")
    return real


def _oserror_text(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def _opened_path(fd: int, path: str) -> str:
    """Where an open descriptor really points (Linux: /proc), to re-check after open()."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        if not os.path.samestat(os.fstat(fd), os.stat(real)):
            raise ImageError("unreadable", "the file changed while it was opened") from None
        return real


def read_confined(path: str, root: str) -> bytes:
    """A regular file's bytes, opened without following a final symlink and re-checked.

    Closes the gap between the check and the open: a file swapped for a link (or a folder
    swapped for a link to elsewhere) after ``resolve_under_root`` is refused here.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError("missing", "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("unreadable", "the path became a symbolic link") from None
        raise ImageError("unreadable", f"cannot open file: {_oserror_text(exc)}") from None
    try:
        if not _under(_opened_path(fd, path), root):
            raise ImageError("unreadable", "the file is no longer under the served root")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("unreadable", "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageError("too-large", f"file is over the {MAX_FILE_BYTES // MiB} MiB limit")
        parts, total = [], 0
        while chunk := os.read(fd, MiB):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise ImageError("too-large", f"file is over the {MAX_FILE_BYTES // MiB} MiB limit")
            parts.append(chunk)
        return b"".join(parts)
    except OSError as exc:
        raise ImageError("unreadable", f"cannot read file: {_oserror_text(exc)}") from None
    finally:
        os.close(fd)
