"""File names as bytes: the exact key the store keeps, the text a person reads, base64 for logs.

A POSIX name is bytes. Python hands a name that is not valid UTF-8 over as text with
surrogate escapes (``os.fsdecode``), which no UTF-8 file, database or terminal can hold; its
readable form (``\\xff`` for the byte 0xff) is also the exact name of another possible file.
So the readable text is only ever shown, never used to find a file again: the store keys such
a name by its raw bytes, and logs carry the bytes in base64 beside the text (N1 in
docs/reliability.md).
"""

from __future__ import annotations

import base64
import binascii
import os


def is_utf8(path: str | os.PathLike) -> bool:
    """True when the name's bytes are valid UTF-8 (its text is then exact)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_text(path: str | os.PathLike) -> str:
    """A path as text to show: bytes that are not UTF-8 appear as ``\\xNN`` escapes.

    For display only: two different names can show the same text.
    """
    p = os.fspath(path)
    if is_utf8(p):
        return p
    return p.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def path_key(path: str | os.PathLike) -> str | bytes:
    """The value the store keeps for a path: its text when that is UTF-8, else its raw bytes.

    SQLite never finds a BLOB equal to a TEXT value, so the file named with the byte 0xff
    and the file named with the four characters ``\\xff`` are two keys.
    """
    p = os.fspath(path)
    return p if is_utf8(p) else os.fsencode(p)


def key_path(value: str | bytes) -> str:
    """The path a stored key stands for (surrogate escapes for bytes that are not UTF-8)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def path_b64(path: str | os.PathLike) -> str | None:
    """Base64 of the raw bytes of a name that is not UTF-8; None when its text is exact."""
    p = os.fspath(path)
    return None if is_utf8(p) else base64.b64encode(os.fsencode(p)).decode("ascii")


def from_b64(text: str) -> str:
    """The path whose raw bytes ``text`` holds in base64; ValueError when it is not base64."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not base64: {text!r}") from exc
    if not raw or b"\0" in raw:
        raise ValueError(f"not a file name: {text!r}")
    return os.fsdecode(raw)
