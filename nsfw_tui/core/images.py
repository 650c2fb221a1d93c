"""Safe image loading: the one loader every caller uses to turn untrusted files into RGB pixels."""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import logging
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .errors import ImageError
from .preprocess import Preprocessing
from .structure import incomplete, sniff
from .video import VideoFrames, check_video, is_video_name, sample_bytes, sniff_video

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024 * 1024
"""Files above this are rejected before any byte is decoded."""
MAX_FRAMES_IN_FILE = 10_000
"""Files claiming more frames than this are rejected (Pillow security.rst D-3)."""
BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto this fixed colour before scoring."""

_CHUNK = 1024 * 1024
_DRAFTABLE = frozenset({"JPEG", "MPO"})
# Formats whose later frames are animation frames worth sampling; in TIFF, MPO and HEIF
# they are pages, stereo views or thumbnails, so only the primary image is used.
_ANIMATED = frozenset({"GIF", "PNG", "WEBP", "AVIF"})
# ImageOps.exif_transpose's table, applied to every frame from one reading of the tag:
# exif_transpose re-serialises the EXIF block on each call, which raises on a corrupt one.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@functools.cache
def _register_heif() -> bool:
    """Register the HEIF opener with Pillow on first use; False when no plugin is installed.

    pi-heif (decode-only) is a base dependency; pillow-heif, where a person has it instead,
    registers the same opener. Done lazily so that importing the loader stays cheap.
    """
    for module in ("pi_heif", "pillow_heif"):
        try:
            plugin = importlib.import_module(module)
            plugin.register_heif_opener()
            return True
        except Exception:  # absent or broken: try the next, else HEIF is simply not allowed
            continue
    return False


ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG",
    "MPO",
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "TIFF",
    "HEIF",  # where the opener registers (_register_heif)
    "AVIF",  # where Pillow is built with it (features.check("avif"))
)
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    | {".heic", ".heif", ".hif", ".avif"}
)


def is_image_name(name: str) -> bool:
    """True when the file name has an image suffix (content still decides on load)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def is_media_name(name: str) -> bool:
    """True for an image or a video suffix: the files a scan or a watch picks up."""
    return is_image_name(name) or is_video_name(name)


# -- reading bytes -----------------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _too_large(size: int, limit: int | None = None) -> ImageError:
    limit = MAX_FILE_BYTES if limit is None else limit
    return ImageError("too-large", f"file is {_mib(size)}, over the {_mib(limit)} limit")


def open_checked(path: str | os.PathLike, limit: int | None = None) -> tuple[BinaryIO, int]:
    """Open a regular file of at most ``limit`` bytes (MAX_FILE_BYTES by default) for
    reading; ImageError for anything that is not one."""
    limit = MAX_FILE_BYTES if limit is None else limit
    p = os.fspath(path)
    # A FIFO is never opened at all (N2): looked at first, then opened with O_NONBLOCK and
    # looked at again through the descriptor, in case it was swapped in between.
    try:
        mode: int | None = os.stat(p).st_mode
    except (OSError, ValueError):
        mode = None  # the open below says why
    if mode is not None and not stat.S_ISREG(mode):
        what = "is a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ImageError("unreadable", f"cannot read file: {what}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError("missing", "file not found") from None
    except (PermissionError, IsADirectoryError):
        what = "is a directory" if os.path.isdir(p) else "permission denied"
        raise ImageError("unreadable", f"cannot read file: {what}") from None
    except OSError as exc:
        raise ImageError("unreadable", f"cannot open file: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the name
        raise ImageError("unreadable", "cannot open file: invalid file name") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("unreadable", "cannot read file: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("unreadable", "cannot read file: not a regular file")
        if st.st_size == 0:
            raise ImageError("empty", "file is empty (0 bytes)")
        if st.st_size > limit:
            raise _too_large(st.st_size, limit)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _read_error(exc: OSError) -> ImageError:
    return ImageError("unreadable", f"cannot read file: {exc.strerror or exc}")


def read_bytes(path: str | os.PathLike) -> bytes:
    """All of a file's bytes; ImageError missing / unreadable / empty / too-large."""
    f, size = open_checked(path)
    with f:
        try:
            parts = [f.read(size)]
            total = len(parts[0])
            # the file may still be growing: read on, but never past the cap
            while chunk := f.read(_CHUNK):
                total += len(chunk)
                if total > MAX_FILE_BYTES:
                    raise _too_large(total)
                parts.append(chunk)
        except OSError as exc:
            raise _read_error(exc) from None
    if total == 0:
        raise ImageError("empty", "file is empty (0 bytes)")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def hash_file(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256 hex, size in bytes), streamed; raises ImageError like read_bytes."""
    f, _ = open_checked(path)
    digest = hashlib.sha256()
    total = 0
    with f:
        try:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
                if total > MAX_FILE_BYTES:
                    raise _too_large(total)
                digest.update(chunk)
        except OSError as exc:
            raise _read_error(exc) from None
    if total == 0:
        raise ImageError("empty", "file is empty (0 bytes)")
    return digest.hexdigest(), total


# -- decoding ----------------------------------------------------------------------------


@dataclass
class LoadedImage:
    """Decoded RGB frames plus what the file says about itself."""

    frames: list[Image.Image]
    """RGB, upright; the sampled frames of an animation, else one."""
    width: int
    """Upright full-size width as stored in the file (before draft)."""
    height: int
    format: str
    n_frames: int
    """Frames in the file (not only the sampled ones)."""


@functools.cache
def _open_formats() -> tuple[str, ...]:
    # MPO has no opener of its own: the JPEG opener returns MPO files
    _register_heif()
    Image.init()
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def _pixel_limit() -> int:
    return Image.MAX_IMAGE_PIXELS or 89_478_485


def _gif_frame_count(data: bytes, limit: int) -> int:
    """Image descriptors in a GIF, counting at most limit + 1, without decoding pixels.

    Pillow's own n_frames walks every frame in Python; a GIF of 16-byte frames under
    the size cap has millions of them.  Bytes are skipped exactly as Pillow skips them.
    """
    end = len(data)
    if end < 13:
        return 0
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    frames = 0
    while pos < end and frames <= limit:
        block = data[pos]
        if block == 0x3B:
            break
        if block == 0x21:
            pos += 2
        elif block == 0x2C:
            if pos + 10 > end:
                break
            flags = data[pos + 9]
            pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            frames += 1
        else:
            pos += 1
            continue
        while pos < end and data[pos]:
            pos += data[pos] + 1
        pos += 1
    return frames


def _count_frames(im: Image.Image, data: bytes) -> int:
    if im.format == "GIF" and _gif_frame_count(data, MAX_FRAMES_IN_FILE) > MAX_FRAMES_IN_FILE:
        n = MAX_FRAMES_IN_FILE + 1
    elif im.format == "TIFF":
        # n_frames walks the whole IFD chain; a chain can be as long as the file allows
        n = 1
        try:
            while n <= MAX_FRAMES_IN_FILE:
                im.seek(n)
                n += 1
        except Exception:  # EOFError at the end; a broken later page only ends the count
            pass
        im.seek(0)
    else:
        # GIF is bounded by the prescan; APNG, WebP, AVIF, MPO and HEIF read a header
        n = int(getattr(im, "n_frames", 1))
    if n > MAX_FRAMES_IN_FILE:
        if im.format in ("GIF", "TIFF"):  # counting stopped just past the limit
            reason = f"{im.format} file has more than {MAX_FRAMES_IN_FILE:,} frames"
        else:
            reason = (
                f"{im.format} file claims {n:,} frames, over the {MAX_FRAMES_IN_FILE:,}-frame limit"
            )
        raise ImageError("too-many-frames", reason)
    return max(1, n)


def _sample(n_frames: int, area: int, max_frames: int) -> list[int]:
    """Evenly spaced frame indices, frame 0 first.

    Frames decode in sequence (each composites onto the last), so the span sampled is
    cut to what fits a pixel budget, and so is the number of frames kept in memory.
    """
    budget = _pixel_limit()
    span = max(1, min(n_frames, 2 * budget // max(1, area)))
    k = max(1, min(max_frames, span, budget // max(1, area)))
    if k == 1:
        return [0]
    return sorted({round(i * (span - 1) / (k - 1)) for i in range(k)})


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a corrupt EXIF block must never fail the load
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _flatten(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    out = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    out.alpha_composite(rgba)
    return out.convert("RGB")


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """A new RGB image: alpha composited onto BACKGROUND, high bit depths scaled to 8 bits."""
    mode = im.mode
    if mode.startswith("I;16"):
        # convert() clips at 255, turning a 16-bit gradient white; 65535 / 257 == 255
        a = np.asarray(im).astype(np.uint32)
        return _gray_to_rgb((a + 128) // 257)
    if mode == "I":
        a = np.asarray(im).astype(np.int64)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 65535:  # almost always 16-bit data widened on the way in
            return _gray_to_rgb((a + 128) // 257)
        span = max(1, hi - lo)
        return _gray_to_rgb(((a - lo) * 255 + span // 2) // span)
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and a.max() <= 1.0:  # float images are conventionally 0..1
            a = a * 255.0
        return _gray_to_rgb(np.clip(np.rint(a), 0, 255))
    if mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        return _flatten(im)
    return im.convert("RGB")


def _bomb(pixels: int | None) -> ImageError:
    limit = _pixel_limit()
    count = f"image has {pixels:,} pixels, over" if pixels else "image is over"
    return ImageError("bomb", f"{count} the {limit:,}-pixel limit (possible decompression bomb)")


def _check_pixels(im: Image.Image) -> None:
    # The warnings filter is process-global and catch_warnings() is not thread-safe, so
    # the 1x limit is also enforced here, where no other thread can undo it.
    pixels = im.width * im.height
    if pixels > _pixel_limit():
        raise _bomb(pixels)


def _sniff(prefix: bytes) -> str | None:
    """The format whose magic bytes match, asking each plugin's accept() and nothing more."""
    _open_formats()  # every plugin registered
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        if accept is None:
            continue
        try:
            if accept(prefix) is True:
                return fmt
        except Exception:
            continue
    return None


def _unidentified(data: bytes) -> ImageError:
    fmt = _sniff(data[:16])
    if fmt is None:
        return ImageError("unidentified", "not a recognised image or video file")
    if fmt in ALLOWED_FORMATS:
        return ImageError("unidentified", f"looks like {fmt} but its header cannot be read")
    return ImageError("unidentified", f"{fmt} files are not allowed")


def _classify(exc: Exception, fmt: str | None, data: bytes) -> ImageError:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        match = re.search(r"\((\d+) pixels\)", str(exc))
        return _bomb(int(match[1]) if match else None)
    if isinstance(exc, MemoryError):
        return ImageError("bomb", "ran out of memory while decoding (possible decompression bomb)")
    what = fmt or _sniff(data[:16]) or "image"
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    # decoders often report a cut file as an unreadable header: its structure tells
    reason = incomplete(data, fmt)
    if reason:
        return ImageError("truncated", reason)
    if isinstance(exc, EOFError) or (
        isinstance(exc, OSError) and re.search(r"truncat|end of (file|data)", text, re.I)
    ):
        return ImageError("truncated", f"{what} file is truncated")
    if isinstance(exc, UnidentifiedImageError):
        return _unidentified(data)
    return ImageError("corrupt", f"cannot decode {what}: {type(exc).__name__}: {text}")


def _decode(data: bytes, draft: tuple[int, int] | None, max_frames: int) -> LoadedImage:
    fmt: str | None = None
    try:
        with Image.open(io.BytesIO(data), formats=_open_formats()) as im:
            fmt = im.format or "image"
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageError("corrupt", f"{fmt} image has no pixels ({width}x{height})")
            _check_pixels(im)
            n_frames = _count_frames(im, data)
            # Decoders turn a zero tail (an interrupted or preallocated download) into grey
            # pixels without complaint, so completeness is walked, not left to them (P12).
            reason = incomplete(data, fmt)
            if reason:
                raise ImageError("truncated", reason)
            orientation = 1
            if draft is not None and fmt in _DRAFTABLE:
                # draft() only works before load(), and EXIF may swap the requested sides
                orientation = _orientation(im)
                size = draft if orientation < 5 else (draft[1], draft[0])
                im.draft("RGB", size)
            im.load()
            if orientation == 1:
                orientation = _orientation(im)
            if fmt in _ANIMATED and n_frames > 1:
                indices = _sample(n_frames, width * height, max_frames)
            else:
                indices = [0]
            frames = []
            for index in indices:
                if index:
                    im.seek(index)
                    _check_pixels(im)  # GIF grows its canvas to fit a frame
                    im.load()
                frame = _to_rgb(im)
                if orientation in _TRANSPOSE:
                    frame = frame.transpose(_TRANSPOSE[orientation])
                frames.append(frame)
    except ImageError:
        raise
    except Exception as exc:  # Pillow's policy: any exception is an ordinary rejection
        raise _classify(exc, fmt, data) from exc
    if orientation >= 5:
        width, height = height, width
    return LoadedImage(frames=frames, width=width, height=height, format=fmt, n_frames=n_frames)


def check_structure(data: bytes) -> str:
    """The loader's completeness check alone, without decoding: the format's name, else
    ImageError ``unidentified`` (no image format's magic bytes) or ``truncated`` (P12).
    A video container is named too ("MP4", "MKV", ...), after the check its structure allows."""
    if (container := sniff_video(data[:64])) is not None:
        check_video(io.BytesIO(data), len(data), container)
        return container
    fmt = sniff(data)
    if fmt is None:
        raise ImageError("unidentified", "not a recognised image or video file")
    reason = incomplete(data, fmt)
    if reason:
        raise ImageError("truncated", reason)
    return fmt


def load_image(
    source: str | os.PathLike | bytes,
    *,
    draft: tuple[int, int] | None = None,
    max_frames: int = 8,
) -> LoadedImage:
    """Decode a file or its bytes into upright RGB frames; every failure is an ImageError.

    draft is a (w, h) that JPEG may decode down to (at least that size, DCT-scaled).
    """
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("empty", "file is empty (0 bytes)")
        if len(data) > MAX_FILE_BYTES:
            raise _too_large(len(data))
    else:
        data = read_bytes(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Between 1x and 2x MAX_IMAGE_PIXELS Pillow only warns; the policy is to refuse
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data, draft, max_frames)
        finally:
            for w in caught:
                log.debug("decode warning: %s: %s", w.category.__name__, w.message)


@dataclass
class Decoded:
    """A file hashed and decoded into model-ready pixels, ready to cross a process boundary."""

    sha256: str
    size: int
    width: int
    height: int
    format: str
    n_frames: int
    pixels: list[np.ndarray]
    """uint8 (H, W, 3) RGB from Preprocessing.pixels, one per sampled frame."""
    path: str = ""
    frame_times: list[float] | None = None
    """A video's sampled frames' times in seconds, one per pixels entry; None for a still."""


@dataclass
class Failed:
    """An image that gave no pixels, and why; ready to cross a process boundary."""

    path: str
    error: ImageError
    sha256: str | None = None  # known when the bytes were read but did not decode
    size: int | None = None


Result = Decoded | Failed


def decode_image(
    source: bytes | Callable[[], bytes],
    name: str,
    preprocessing: Preprocessing,
    *,
    use_draft: bool = True,
    max_frames: int = 8,
    video_frames: int = 16,
) -> Result:
    """The one decode pipeline: read, hash, decode and preprocess every sampled frame.

    ``source`` is the bytes, or a function that reads them (``read_bytes`` of a path, or a
    confined reader); its ImageError is a failure like any other. ``name`` becomes the
    result's ``path``. Nothing is raised: every failure becomes a ``Failed`` with its reason
    (an ImageError as it is, MemoryError as ``bomb``, any other exception as ``corrupt`` with
    its type), carrying the hash and size whenever the bytes were read. Bytes that are a
    video container go to ``video.sample_bytes`` (``video_frames`` of them).
    """
    sha256 = size = None
    try:
        data = source() if callable(source) else source
        sha256, size = hashlib.sha256(data).hexdigest(), len(data)
        draft = preprocessing.draft_size() if use_draft else None
        if (container := sniff_video(data[:64])) is not None:  # an upload may be a video
            video = sample_bytes(data, video_frames, draft, container)
            return preprocessed(video, sha256, size, name, preprocessing)
        loaded = load_image(data, draft=draft, max_frames=max_frames)
        del data
        return preprocessed(loaded, sha256, size, name, preprocessing)
    except ImageError as exc:
        error = ImageError(exc.kind, exc.reason)
    except MemoryError:
        error = ImageError("bomb", "ran out of memory while decoding")
    except Exception as exc:  # a decoder bug costs one image, never the scan or the request
        error = ImageError("corrupt", f"{type(exc).__name__}: {exc}")
    error.sha256, error.size = sha256, size
    return Failed(name, error, sha256, size)


def preprocessed(
    loaded: LoadedImage | VideoFrames,
    sha256: str,
    size: int,
    name: str,
    preprocessing: Preprocessing,
) -> Decoded:
    """An image's frames or a video's sampled ones preprocessed, each full-size frame dropped
    as soon as it is; a video keeps its frames' times."""
    times = getattr(loaded, "times", None)
    pixels = []
    while loaded.frames:
        pixels.append(preprocessing.pixels(loaded.frames.pop(0)))
    return Decoded(
        sha256=sha256,
        size=size,
        width=loaded.width,
        height=loaded.height,
        format=loaded.format,
        n_frames=loaded.n_frames or len(pixels),
        pixels=pixels,
        path=name,
        frame_times=None if times is None else list(times),
    )


def decode_file(
    path: str | os.PathLike,
    preprocessing: Preprocessing,
    *,
    use_draft: bool = True,
    max_frames: int = 8,
) -> Decoded:
    """``decode_image`` of a file by its path; raises the failure's ImageError instead."""
    result = decode_image(
        functools.partial(read_bytes, path),
        os.fspath(path),
        preprocessing,
        use_draft=use_draft,
        max_frames=max_frames,
    )
    if isinstance(result, Failed):
        raise result.error
    return result
