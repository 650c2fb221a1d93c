"""Completeness checks: walk each format's structure over the bytes, whatever the decoder says.

A download that was interrupted, or a file preallocated by a browser or torrent client and
not yet filled, ends in zeros; most decoders turn those zeros into grey pixels without a
word. Each walker follows its format's own structure to where the file must end and
returns None when everything is there, else a readable reason. They read bytes already in
memory and decode nothing.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable

import numpy as np

# The version of these checks. The store records it with every image the loader has read
# (images.checked, schema 6), and trusts an image's "no error" and its cached predictions
# only when they were recorded under this version or a later one: a stricter check bumps
# it, and every image read under an older one is read again once (0: before any check).
CHECK_VERSION = 1

# -- shared ---------------------------------------------------------------------------------

_NONZERO = re.compile(rb"[^\x00]")


def _cut(fmt: str, what: str, data: bytes, at: int) -> str:
    """A reason for a file that stops making sense at byte ``at``; says so when zeros follow."""
    if at < len(data) and _NONZERO.search(data, at) is None:
        return (
            f"{fmt} file is incomplete: {what}, and its last {len(data) - at:,} bytes are "
            "zeros (an interrupted or preallocated download)"
        )
    return f"{fmt} file is incomplete: {what}"


# -- JPEG (and MPO, whose first image is a JPEG) ----------------------------------------------

_FIRST_WINDOW, _LAST_WINDOW = 1 << 16, 1 << 24


def _scan_end(data: bytes, start: int) -> int:
    """Where the entropy-coded data from ``start`` ends: its first marker, or -1 for none.

    A marker is 0xFF then anything but a stuffed 0x00, a restart marker (RST0-7) or another
    fill 0xFF; entropy-coded data holds no other 0xFF pair. In a photo about one byte in 150
    is 0xFF, nearly all of them stuffed, so the search runs in numpy over growing windows:
    about 0.5 ms per MB of a photo, a third of what a regular expression takes on it.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    last = len(data) - 1
    pos, window = start, _FIRST_WINDOW
    while pos < last:
        stop = min(last, pos + window)
        ff = np.flatnonzero(arr[pos:stop] == 0xFF) + pos
        after = arr[ff + 1]
        hits = np.flatnonzero((after != 0) & (after != 0xFF) & ((after < 0xD0) | (after > 0xD7)))
        if hits.size:
            return int(ff[hits[0]])
        pos, window = stop, min(window * 4, _LAST_WINDOW)
    return -1


# A marker where one is expected: libjpeg skips stray bytes up to the next one, so do we.
_MARKER = re.compile(rb"\xff[^\x00\xff]")
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def jpeg(data: bytes) -> str | None:
    """The primary image's scans must end in an EOI marker; data after it (MPO) is allowed."""
    n = len(data)
    pos = 2  # after SOI
    scanned = False
    while True:
        if pos + 1 >= n or data[pos] != 0xFF or data[pos + 1] in (0x00, 0xFF):
            found = _MARKER.search(data, pos)
            if found is None:
                what = "its image data ends without an end-of-image marker"
                if not scanned:
                    what = "it ends before its image data"
                return _cut("JPEG", what, data, pos)
            pos = found.start()
        marker = data[pos + 1]
        if marker == _EOI:
            return None  # without any scan the decoder refuses it on its own
        if marker == 0xD8:
            return _cut(
                "JPEG", f"a new image starts at byte {pos:,} before this one ended", data, pos
            )
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > n:
            return _cut("JPEG", f"a segment header at byte {pos:,} is cut", data, pos)
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > n:
            return _cut("JPEG", f"a segment at byte {pos:,} runs past the end", data, pos)
        if marker != _SOS:
            pos = end
            continue
        scanned = True
        pos = _scan_end(data, end)
        if pos < 0:
            zeros = n - len(data.rstrip(b"\0"))
            return _cut(
                "JPEG", "its image data ends without an end-of-image marker", data, n - zeros
            )


# -- PNG (APNG too) -----------------------------------------------------------------------------


def _chunk_type_ok(kind: bytes) -> bool:
    return kind.isalpha() and kind.isascii()


def png(data: bytes) -> str | None:
    """Every chunk whole and matching its CRC, up to IEND; bytes after IEND are allowed."""
    n = len(data)
    view = memoryview(data)
    pos = 8
    while True:
        if pos + 12 > n:
            return _cut("PNG", f"it ends at byte {n:,} without an IEND chunk", data, pos)
        length, kind = struct.unpack_from(">I4s", data, pos)
        if not _chunk_type_ok(kind):
            return _cut("PNG", f"no chunk where one should start at byte {pos:,}", data, pos)
        end = pos + 12 + length
        if end > n:
            name = kind.decode("ascii")
            return _cut("PNG", f"chunk {name} at byte {pos:,} runs past the end", data, pos)
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            what = f"chunk {kind.decode('ascii')} at byte {pos:,} fails its CRC check"
            zeros_from = len(data[:end].rstrip(b"\0"))
            if _NONZERO.search(data, zeros_from) is None:
                return _cut("PNG", what, data, zeros_from)
            return f"PNG file is damaged or incomplete: {what}"
        if kind == b"IEND":
            return None
        pos = end


# -- WebP ---------------------------------------------------------------------------------------


def _riff_chunks(data: bytes, pos: int, stop: int, where: str) -> str | None:
    """Walk RIFF chunks from pos to stop; a chunk header of zeros or a chunk past stop is cut."""
    while pos + 8 <= stop:
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        if fourcc == b"\0\0\0\0":
            return _cut(
                "WEBP", f"zeros where a chunk{where} should start at byte {pos:,}", data, pos
            )
        end = pos + 8 + size
        if end > stop:
            name = fourcc.decode("latin-1")
            return _cut(
                "WEBP", f"chunk {name!r}{where} at byte {pos:,} runs past its end", data, pos
            )
        if fourcc == b"ANMF" and size >= 16:
            # an animation frame: 16 bytes of frame header, then the frame's own chunks
            problem = _riff_chunks(data, pos + 24, end, " of an animation frame")
            if problem:
                return problem
        pos = end + (size & 1)  # an odd-sized chunk is followed by a pad byte
    if pos < stop:
        return _cut("WEBP", f"a chunk header at byte {pos:,} is cut", data, pos)
    return None


def webp(data: bytes) -> str | None:
    """The RIFF size must fit the file and every chunk must lie inside it (header first)."""
    if len(data) < 12:
        return _cut("WEBP", "its RIFF header is cut", data, 0)
    stop = 8 + int.from_bytes(data[4:8], "little")
    if stop > len(data):
        return _cut(
            "WEBP",
            f"its header says {stop:,} bytes and the file has {len(data):,}",
            data,
            len(data),
        )
    return _riff_chunks(data, 12, stop, "")


# -- GIF ----------------------------------------------------------------------------------------

_GIF_BLOCK = re.compile(rb"[\x21\x2c\x3b]")


def _sub_blocks(data: bytes, pos: int) -> int:
    """The position after a run of data sub-blocks and its zero terminator (may be past the end)."""
    n = len(data)
    while pos < n and data[pos]:
        pos += data[pos] + 1
    return pos + 1


def gif(data: bytes) -> str | None:
    """Blocks from the screen descriptor to the trailer; stray bytes are skipped as Pillow does."""
    n = len(data)
    if n < 13:
        return _cut("GIF", "its screen descriptor is cut", data, 0)
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while True:
        if pos >= n or data[pos] not in (0x21, 0x2C, 0x3B):
            found = _GIF_BLOCK.search(data, pos) if pos < n else None
            if found is None:
                return _cut("GIF", "it ends without its trailer", data, pos)
            pos = found.start()
        block = data[pos]
        if block == 0x3B:
            return None
        if block == 0x21:
            pos = _sub_blocks(data, pos + 2)
        else:
            if pos + 11 > n:
                return _cut("GIF", f"an image descriptor at byte {pos:,} is cut", data, pos)
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = _sub_blocks(data, pos + 1)  # after the LZW minimum code size
        if pos > n:
            return _cut("GIF", "its last block runs past the end", data, n)


# -- BMP ----------------------------------------------------------------------------------------


def bmp(data: bytes) -> str | None:
    """The pixel data the headers declare must lie inside the file."""
    n = len(data)
    if n < 26:
        return _cut("BMP", "its headers are cut", data, 0)
    offset, header = struct.unpack_from("<II", data, 10)
    if header == 12:  # OS/2 core header
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression = size = 0
    elif n >= 38:
        width, height, _, bits, compression, size = struct.unpack_from("<iiHHII", data, 18)
    else:
        return _cut("BMP", "its headers are cut", data, 0)
    if compression in (0, 3, 6):  # uncompressed rows, padded to 4 bytes
        size = ((abs(width) * bits + 31) // 32) * 4 * abs(height)
    if offset + size > n:
        return _cut("BMP", f"its pixel data runs to byte {offset + size:,}, past the end", data, n)
    return None


# -- TIFF ---------------------------------------------------------------------------------------

_TIFF_INT = {3: "H", 4: "I", 13: "I", 16: "Q"}  # SHORT, LONG, IFD, LONG8
_TIFF_DATA = {273: 279, 324: 325}  # strip and tile offsets, and the tag of their byte counts
_TIFF_TAGS = frozenset(_TIFF_DATA) | frozenset(_TIFF_DATA.values())
_TIFF_MAX_IFDS = 10_001  # one past images.MAX_FRAMES_IN_FILE, which refuses more pages


def _tiff_ifd(data: bytes, ifd: int, e: str, big: bool) -> tuple[str | None, int]:
    """(reason or None, offset of the next IFD) for the directory at ``ifd``."""
    n = len(data)
    word, inline = ("Q", 8) if big else ("I", 4)
    head, entry = (8, 20) if big else (2, 12)
    if ifd + head > n:
        return _cut("TIFF", f"an image directory at byte {ifd:,} lies past the end", data, n), 0
    count = struct.unpack_from(e + ("Q" if big else "H"), data, ifd)[0]
    if count == 0:
        return _cut("TIFF", f"the image directory at byte {ifd:,} is empty", data, ifd), 0
    end = ifd + head + count * entry
    if end + inline > n:
        reason = f"the image directory at byte {ifd:,} runs past the end"
        return _cut("TIFF", reason, data, ifd), 0
    values: dict[int, tuple[int, ...]] = {}
    for at in range(ifd + head, end, entry):
        tag, kind, number = struct.unpack_from(e + "HH" + word, data, at)
        # only where the pixels are: libtiff shrugs off a stray offset in another tag
        if tag not in _TIFF_TAGS or kind not in _TIFF_INT:
            continue
        size = struct.calcsize(e + _TIFF_INT[kind]) * number
        where = at + 4 + inline  # the values themselves, when they fit in the entry
        if size > inline:
            where = struct.unpack_from(e + word, data, where)[0]
            if where + size > n:
                return _cut("TIFF", f"the values of tag {tag} lie past the end", data, n), 0
        values[tag] = struct.unpack_from(f"{e}{number}{_TIFF_INT[kind]}", data, where)
    for offsets, counts in _TIFF_DATA.items():
        for start, length in zip(values.get(offsets, ()), values.get(counts, ()), strict=False):
            if start + length > n:
                reason = f"image data runs to byte {start + length:,}, past the end"
                return _cut("TIFF", reason, data, n), 0
    return None, struct.unpack_from(e + word, data, end)[0]


def tiff(data: bytes) -> str | None:
    """Every directory in the chain, and each strip or tile it declares, inside the file."""
    if len(data) < 16:
        return _cut("TIFF", "its header is cut", data, 0)
    e = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(e + "H", data, 2)[0] == 43
    ifd = struct.unpack_from(e + ("Q" if big else "I"), data, 8 if big else 4)[0]
    seen: set[int] = set()
    while ifd and ifd not in seen and len(seen) < _TIFF_MAX_IFDS:  # Pillow stops at a loop
        seen.add(ifd)
        reason, ifd = _tiff_ifd(data, ifd, e, big)
        if reason:
            return reason
    return None


# -- HEIF and AVIF (ISO base media files) --------------------------------------------------------


def _boxes(
    data: bytes, pos: int, stop: int, fmt: str
) -> tuple[str | None, dict[bytes, tuple[int, int]]]:
    """Walk boxes from pos to stop: (reason or None, {type: (payload start, end)} of each first)."""
    found: dict[bytes, tuple[int, int]] = {}
    while pos + 8 <= stop:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > stop:
                return _cut(fmt, f"a box header at byte {pos:,} is cut", data, pos), found
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = stop - pos  # the box runs to the end
        if kind == b"\0\0\0\0":
            return _cut(fmt, f"zeros where a box should start at byte {pos:,}", data, pos), found
        if size < head or pos + size > stop:
            return _cut(fmt, f"box {kind!r} at byte {pos:,} runs past the end", data, pos), found
        found.setdefault(kind, (pos + head, pos + size))
        pos += size
    if pos < stop:
        return _cut(fmt, f"a box header at byte {pos:,} is cut", data, pos), found
    return None, found


def _iloc_extents(data: bytes, start: int, end: int):
    """(offset, length) of every file-addressed extent in an iloc box payload."""
    version = data[start]
    sizes = int.from_bytes(data[start + 4 : start + 6], "big")
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    pos = start + 6

    def read(width: int) -> int:
        nonlocal pos
        if pos + width > end:
            raise ValueError("iloc box is cut")
        value = int.from_bytes(data[pos : pos + width], "big")
        pos += width
        return value

    for _ in range(read(4 if version == 2 else 2)):
        read(4 if version == 2 else 2)  # item ID
        method = read(2) & 15 if version in (1, 2) else 0
        read(2)  # data reference index
        base = read(base_size)
        for _ in range(read(2)):
            read(index_size)
            offset, length = read(offset_size), read(length_size)
            if method == 0:
                yield base + offset, length


def isobmff(data: bytes, fmt: str = "HEIF") -> str | None:
    """Top-level boxes must tile the file and every item the meta box locates must lie inside it."""
    n = len(data)
    reason, top = _boxes(data, 0, n, fmt)
    if reason or b"meta" not in top:
        return reason
    start, end = top[b"meta"]
    reason, inner = _boxes(data, start + 4, end, fmt)  # meta is a full box: 4 bytes of version
    if reason or b"iloc" not in inner:
        return reason
    try:
        for offset, length in _iloc_extents(data, *inner[b"iloc"]):
            if offset + length > n:
                return _cut(fmt, f"an item runs to byte {offset + length:,}, past the end", data, n)
    except ValueError as exc:
        return _cut(fmt, str(exc), data, n)
    return None


def isobmff_file(f, size: int, fmt: str = "MP4") -> str | None:
    """Top-level boxes of an open ISO base media file (MP4, MOV) must tile it, read box header
    by box header: a video may be far too large to hold in memory for ``isobmff``."""
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        head = f.read(16)
        box, kind = struct.unpack_from(">I4s", head, 0)
        length = 8
        if box == 1:
            if len(head) < 16:
                return f"{fmt} file is incomplete: a box header at byte {pos:,} is cut"
            box, length = struct.unpack_from(">Q", head, 8)[0], 16
        elif box == 0:
            box = size - pos  # the box runs to the end
        if kind == b"\0\0\0\0":
            return f"{fmt} file is incomplete: zeros where a box should start at byte {pos:,}"
        if box < length or pos + box > size:
            return f"{fmt} file is incomplete: box {kind!r} at byte {pos:,} runs past the end"
        pos += box
    if pos < size:
        return f"{fmt} file is incomplete: a box header at byte {pos:,} is cut"
    return None


# -- dispatch -----------------------------------------------------------------------------------

# ISO-BMFF major brands of still and animated AVIF/HEIF images (not MP4 video)
IMAGE_BRANDS = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
)

WALKERS: dict[str, Callable[[bytes], str | None]] = {
    "JPEG": jpeg,
    "MPO": jpeg,
    "PNG": png,
    "WEBP": webp,
    "GIF": gif,
    "BMP": bmp,
    "TIFF": tiff,
    "HEIF": isobmff,
    "AVIF": lambda data: isobmff(data, "AVIF"),
}


def sniff(data: bytes) -> str | None:
    """The walker's format by magic bytes, for a file no decoder would identify."""
    if data[:2] == b"\xff\xd8":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if data[4:8] == b"ftyp" and data[8:12] in IMAGE_BRANDS:
        return "AVIF" if data[8:12] in (b"avif", b"avis") else "HEIF"
    return None


def incomplete(data: bytes, fmt: str | None = None) -> str | None:
    """Why the file is not complete, or None; ``fmt`` is Pillow's name for it (else sniffed)."""
    fmt = fmt if fmt in WALKERS else sniff(data)
    if fmt is None:
        return None
    walker = WALKERS[fmt]
    try:
        return walker(data)
    except (struct.error, IndexError):  # a field read past the end of the bytes
        return _cut(fmt, "a header runs past the end", data, len(data))
