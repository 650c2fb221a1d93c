"""Small thumbnails for the grid: decoded once through the safe loader, cached on disk by hash.

A video's thumbnail is the frame the preview shows (the one that scored highest, else the
first), decoded in the pool's worker like any file and cached under its hash and that time.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .decode_pool import DecodePool
from .errors import ImageError
from .images import Decoded, Failed, Result, load_image, open_checked, read_bytes
from .media import hash_stream, is_video_file
from .preprocess import IMAGENET, Preprocessing
from .video import MAX_VIDEO_BYTES, frame_at, sniff_video

THUMB_SIDE = 192
"""Longest side of a cached thumbnail, in pixels: more than a grid cell shows with any
renderer (half-cell draws about 18 x 14 pixels in a cell, Sixel and kitty about 180 x 140)."""
THUMB_QUALITY = 85
"""JPEG quality of the cached files: about 10 KiB each, so 10,000 images cost about 100 MiB."""


def thumbnail_spec(side: int = THUMB_SIDE) -> Preprocessing:
    """The decode pool's spec for thumbnails: ``resize`` is the box a thumbnail fits in (the
    rest is not used: a thumbnail stays RGB pixels, never a model input)."""
    return replace(IMAGENET(side), crop=None)


Task = tuple[str, float | None]
"""What the pool decodes for a thumbnail: a path and, for a video, the time of its frame."""


def task_path(task: Task | str) -> str:
    """The path of a thumbnail task (the name a ``Failed`` from the pool carries)."""
    return task if isinstance(task, str) else task[0]


def _video_frame(path: str, frame_time: float | None, side: int) -> Decoded | None:
    """A video's frame at ``frame_time`` fitted in ``side``, the file hashed by streaming (a
    video may be far over the image size cap); None when the content is no video after all."""
    fh, size = open_checked(path, MAX_VIDEO_BYTES)
    with fh:
        if sniff_video(fh.read(64)) is None:
            return None
        sha256 = hash_stream(fh)
        try:  # the frame from the bytes just hashed
            shot = frame_at(fh, frame_time, side)
        except ImageError as exc:
            raise ImageError(exc.kind, exc.reason, sha256, size) from None
    return _thumbnail(shot, side, sha256, size, path, list(shot.times))


def _thumbnail(
    loaded: Any, side: int, sha256: str, size: int, path: str, frame_times: list | None = None
) -> Decoded:
    """The first frame of ``loaded`` (an image, or a video's chosen frame) fit in ``side``."""
    frame = loaded.frames[0].convert("RGB")
    frame.thumbnail((side, side), Image.Resampling.LANCZOS)
    extra = {} if frame_times is None else {"frame_times": frame_times}
    return Decoded(
        sha256=sha256,
        size=size,
        width=loaded.width,
        height=loaded.height,
        format=loaded.format,
        n_frames=loaded.n_frames,
        pixels=[np.asarray(frame)],
        path=path,
        **extra,
    )


def decode_thumbnail(
    task: Task | str, spec: Preprocessing, use_draft: bool, max_frames: int
) -> Result:
    """Read, hash and decode one file to a thumbnail fitting ``spec.resize`` (a decode-pool
    decoder, so module-level): a still's first frame, a video's frame at the task's time
    (its first when None). Every failure is a ``Failed`` with its reason."""
    path, frame_time = (task, None) if isinstance(task, str) else task
    sha256 = size = None
    side = spec.resize[0]
    try:
        if is_video_file(path):
            video = _video_frame(path, frame_time, side)
            if video is not None:
                return video
        data = read_bytes(path)
        sha256, size = hashlib.sha256(data).hexdigest(), len(data)
        # The first frame only: a thumbnail shows the file as a viewer would open it.
        loaded = load_image(data, draft=(side, side) if use_draft else None, max_frames=1)
        del data
        return _thumbnail(loaded, side, sha256, size, path)
    except ImageError as exc:
        sha256, size = sha256 or exc.sha256, size or exc.size
        error = ImageError(exc.kind, exc.reason)
    except MemoryError:
        error = ImageError("bomb", "ran out of memory while decoding")
    except Exception as exc:  # a decoder bug costs one thumbnail, never the screen
        error = ImageError("corrupt", f"{type(exc).__name__}: {exc}")
    error.sha256, error.size = sha256, size
    return Failed(path, error, sha256, size)


@dataclass
class Thumbnail:
    """One file's thumbnail, or why there is none."""

    path: str
    image: Image.Image | None
    sha256: str | None = None
    error: str | None = None  # "kind: reason" when the file gave no picture
    cached: bool = False  # read from the disk cache, not decoded from the file


class ThumbnailCache:
    """Thumbnails on disk under ``root/<side>/<hash[:2]>/<hash>.jpg``: rebuildable, so a file
    that cannot be read back is decoded again rather than trusted. A video's frame at a known
    time is ``<hash>-<ms>ms.jpg``: a video rescored by another model may show another frame."""

    def __init__(self, root: Path, side: int = THUMB_SIDE) -> None:
        self.root = Path(root) / str(side)
        self.side = side

    def path_for(self, sha256: str, frame_time: float | None = None) -> Path:
        name = sha256 if frame_time is None else f"{sha256}-{round(frame_time * 1000)}ms"
        return self.root / sha256[:2] / f"{name}.jpg"

    def read(self, sha256: str, frame_time: float | None = None) -> Image.Image | None:
        """The cached thumbnail (through the safe loader, as any file), or None."""
        path = self.path_for(sha256, frame_time)
        if not path.is_file():
            return None
        try:
            image = load_image(path, max_frames=1).frames[0]
        except ImageError:
            return None  # a damaged cache entry: decoded again from the file and replaced
        if max(image.size) > self.side:
            return None
        return image

    def write(
        self, sha256: str, image: Image.Image, frame_time: float | None = None
    ) -> Image.Image:
        """Store atomically (a reader sees the old file, or none, or the whole new one), and
        return the picture as stored: a thumbnail looks the same fresh or from the cache."""
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=THUMB_QUALITY)
        data = buf.getvalue()
        stored = load_image(data, max_frames=1).frames[0]
        path = self.path_for(sha256, frame_time)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".thumb-", suffix=".jpg")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a full or read-only disk costs the cache, not the grid
        return stored

    def get(
        self,
        path: str,
        sha256: str | None,
        pool: DecodePool,
        timeout_s: float,
        frame_time: float | None = None,
    ) -> Thumbnail:
        """The thumbnail of ``path`` (a video's: its frame at ``frame_time``, the first when
        None): from the cache when its hash is known and cached, else decoded in ``pool``
        (under ``timeout_s``) and cached under the hash of its bytes and that time."""
        if sha256:
            image = self.read(sha256, frame_time)
            if image is not None:
                return Thumbnail(path, image, sha256, cached=True)
        result = pool.decode((path, frame_time), time.monotonic() + timeout_s)
        if isinstance(result, Failed):
            error = result.error
            return Thumbnail(path, None, result.sha256, f"{error.kind}: {error.reason}")
        # a still ignores the time asked: its thumbnail is the same whatever a model said
        at = frame_time if result.frame_times is not None else None
        image = self.write(result.sha256, Image.fromarray(result.pixels[0], "RGB"), at)
        return Thumbnail(path, image, result.sha256)


def thumbnail_pool(workers: int, timeout_s: float, side: int = THUMB_SIDE) -> DecodePool:
    """The decode pool thumbnails are made in (``workers`` 0: in the calling thread)."""
    return DecodePool(
        thumbnail_spec(side),
        workers=workers,
        timeout_s=timeout_s,
        max_frames=1,
        decoder=decode_thumbnail,
        name_of=task_path,
    )
