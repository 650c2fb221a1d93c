"""Photos and videos behind one call each: a file's decode for scoring, and its preview frame."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

from .errors import ImageError
from .images import (
    Failed,
    LoadedImage,
    Result,
    _read_error,
    decode_image,
    load_image,
    open_checked,
    preprocessed,
    read_bytes,
)
from .preprocess import Preprocessing
from .video import MAX_VIDEO_BYTES, check_video, frame_at, is_video_name, sample_video, sniff_video

_CHUNK = 1024 * 1024


def hash_stream(fh: BinaryIO) -> str:
    """SHA-256 of an open file from its start, streamed; a read that fails is ``unreadable``
    (I/O, for a later scan to try again), never a content error."""
    fh.seek(0)
    digest = hashlib.sha256()
    try:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    except OSError as exc:
        raise _read_error(exc) from None
    fh.seek(0)
    return digest.hexdigest()


def decode_video_path(
    path: str, preprocessing: Preprocessing, use_draft: bool, count: int, max_frames: int = 8
) -> Result:
    """Hash and decode a video file by its path, ``count`` frames sampled. It is streamed, not
    read whole: a video may be far over the image size cap. A file that is not a video by its
    content goes to the image loader. Nothing is raised: every failure is a ``Failed``."""
    sha256 = size = None
    try:
        fh, size = open_checked(path, MAX_VIDEO_BYTES)
        with fh:
            fmt = sniff_video(fh.read(64))
            if fmt is None:
                return decode_image(
                    lambda: read_bytes(path),
                    path,
                    preprocessing,
                    use_draft=use_draft,
                    max_frames=max_frames,
                )
            sha256 = hash_stream(fh)
            check_video(fh, size, fmt)
            draft = preprocessing.draft_size() if use_draft else None
            video = sample_video(fh, fmt, count, draft)
        return preprocessed(video, sha256, size, path, preprocessing)
    except ImageError as exc:
        error = ImageError(exc.kind, exc.reason)
    except MemoryError:
        error = ImageError("bomb", "ran out of memory while decoding")
    except Exception as exc:  # a decoder bug costs one file, never the scan
        error = ImageError("corrupt", f"{type(exc).__name__}: {exc}")
    error.sha256, error.size = sha256, size
    return Failed(path, error, sha256, size)


def is_video_file(path: str | os.PathLike) -> bool:
    """True when a file is a video by its name or, failing that, by its first bytes."""
    if is_video_name(os.fspath(path)):
        return True
    try:
        fh, _ = open_checked(path, MAX_VIDEO_BYTES)  # never a FIFO (N2)
        with fh:
            return sniff_video(fh.read(64)) is not None
    except (OSError, ImageError):
        return False  # the image loader says why


def load_frame(
    path: str | os.PathLike, frame_time: float | None, max_side: int = 1024
) -> LoadedImage:
    """A preview of any file: a video's frame at ``frame_time`` (the one that scored highest;
    the first when None), else the image itself; every failure an ImageError."""
    if not is_video_file(path):
        return load_image(path, draft=(max_side, max_side), max_frames=1)
    fh, _ = open_checked(path, MAX_VIDEO_BYTES)
    with fh:
        shot = frame_at(fh, frame_time, max_side)
    return LoadedImage(
        frames=shot.frames,
        width=shot.width,
        height=shot.height,
        format=shot.format,
        n_frames=shot.n_frames,
    )
