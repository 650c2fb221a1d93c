"""Video files (mp4, mov, webm, mkv, avi): evenly spaced frames decoded with PyAV, if installed.

A video is scored on ``count`` frames: for each evenly spaced target time the decoder seeks
to the keyframe before it and decodes forward to the first frame at or past it, keeping that
frame's real time. A two-hour film costs its sampled frames and the frames between each
keyframe and its target, never the whole film. A file without an index cannot seek: it is
decoded from the start, which costs against the per-file time limit the decode pool enforces
(the worker is killed, not the app). PyAV comes with the ``video`` extra; without it a video
is an error that names the extra, never skipped and never safe.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from .errors import ImageError
from .structure import IMAGE_BRANDS, isobmff_file

log = logging.getLogger(__name__)

# Display-matrix rotations (counter-clockwise quarter turns) as the transposes that undo them
_TURNS = {
    1: Image.Transpose.ROTATE_90,
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_270,
}

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi"})
VIDEO_FORMATS = frozenset({"MP4", "MOV", "MKV", "WEBM", "AVI"})
"""The containers ``sniff_video`` names."""
MAX_VIDEO_BYTES = 64 * 1024**3
"""Video files above this are rejected before any byte is decoded (images: 256 MiB)."""
EXTRA_LINE = (
    "video files need the video extra (PyAV is not installed): pip install 'nsfw-tui[video]'"
)

# QuickTime files may start with these top-level boxes instead of ftyp
_QUICKTIME_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def is_video_name(name: str) -> bool:
    """True when the file name has a video suffix (content still decides on load)."""
    return os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def sniff_video(prefix: bytes) -> str | None:
    """The container by its magic bytes ("MP4", "MOV", "MKV", "WEBM", "AVI"), else None."""
    if prefix[4:8] == b"ftyp":
        brand = prefix[8:12]
        if brand in IMAGE_BRANDS:  # a still AVIF/HEIF image: Pillow's
            return None
        return "MOV" if brand == b"qt  " else "MP4"
    if prefix[4:8] in _QUICKTIME_BOXES and int.from_bytes(prefix[:4], "big") >= 8:
        return "MOV"
    if prefix[:4] == b"\x1a\x45\xdf\xa3":  # EBML: the DocType sits in the first few bytes
        return "WEBM" if b"webm" in prefix[:64] else "MKV"
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"AVI ":
        return "AVI"
    return None


@dataclass
class VideoFrames:
    """The sampled frames of a video and what it cost to get them."""

    frames: list[Image.Image]
    """RGB, one per target time that a frame was found for."""
    times: list[float]
    """Each frame's own time in seconds from the start of the video."""
    width: int
    height: int
    format: str
    n_frames: int
    """Frames in the video as its header says (0 when it does not say)."""
    duration: float | None
    decoded: int
    """Frames decoded in all, sampled or not: the cost of sampling."""


def _av():
    try:
        import av
    except ImportError:
        raise ImageError("needs-extra", EXTRA_LINE) from None
    return av


def _scaled(width: int, height: int, draft: tuple[int, int] | None) -> tuple[int, int]:
    """A size at least ``draft`` on both sides where the frame is larger (JPEG draft's rule)."""
    if draft is None or width <= draft[0] or height <= draft[1]:
        return width, height
    scale = max(draft[0] / width, draft[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _Sampler:
    """One open container and its video stream, decoding frames at chosen times."""

    def __init__(self, container, fmt: str, draft: tuple[int, int] | None) -> None:
        self.container = container
        self.fmt = fmt
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            what = f"{', '.join(kinds)} streams only" if kinds else "no streams at all"
            raise ImageError("no-video", f"{fmt} file has no video stream ({what})")
        self.stream = stream = container.streams.video[0]
        ctx = stream.codec_context
        self.width, self.height = int(ctx.width or 0), int(ctx.height or 0)
        if self.width <= 0 or self.height <= 0:
            raise ImageError("corrupt", f"{fmt} video stream has no frame size")
        limit = Image.MAX_IMAGE_PIXELS or 89_478_485  # the image loader's limit
        if self.width * self.height > limit:
            raise ImageError(
                "bomb",
                f"video frames have {self.width * self.height:,} pixels, over the "
                f"{limit:,}-pixel limit",
            )
        self.size = _scaled(self.width, self.height, draft)
        self.base = stream.time_base
        start = stream.start_time
        self.start = float(start * self.base) if start is not None and self.base else 0.0
        self.decoded = 0
        self.turned = False

    def duration(self) -> float | None:
        s = self.stream
        if s.duration and self.base:
            return float(s.duration * self.base)
        if self.container.duration:
            return self.container.duration / 1_000_000
        return None

    def n_frames(self) -> int:
        """Frames in the stream as its header says, else as its duration and rate imply."""
        if self.stream.frames:
            return int(self.stream.frames)
        duration, rate = self.duration(), self.stream.average_rate
        return round(duration * float(rate)) if duration and rate else 0

    def _image(self, frame) -> Image.Image:
        """The frame upright: a phone's portrait video is stored sideways with a display
        matrix saying how to turn it (as a photo's EXIF orientation does)."""
        w, h = self.size
        image = frame.to_image(width=w, height=h).convert("RGB")
        turn = _TURNS.get(round((getattr(frame, "rotation", 0) or 0) / 90) % 4)
        self.turned = turn in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
        return image if turn is None else image.transpose(turn)

    def upright(self) -> tuple[int, int]:
        """The full-size (width, height) as shown, after the display matrix's turn."""
        return (self.height, self.width) if self.turned else (self.width, self.height)

    def _frames(self):
        av = _av()
        try:
            for frame in self.container.decode(self.stream):
                self.decoded += 1
                if frame.pts is None:
                    continue
                yield frame
        except av.error.EOFError:
            return

    def at(self, target: float):
        """The first frame at or past ``target`` (seconds from the start), else the last one
        before the end; None when no frame decodes after the keyframe the seek lands on."""
        self.container.seek(
            int((target + self.start) / self.base), stream=self.stream, backward=True
        )
        last = None
        for frame in self._frames():
            last = frame
            if frame.time - self.start >= target - 1e-6:
                break
        return last

    def forward(self, count: int):
        """Every frame from here on, thinned to at most ``2 * count`` evenly spread ones:
        for a file that gives no duration to aim at (memory stays bounded)."""
        kept, stride = [], 1
        for index, frame in enumerate(self._frames()):
            if index % stride == 0:
                kept.append((frame.time - self.start, self._image(frame)))
                if len(kept) > 2 * count:
                    kept, stride = kept[::2], stride * 2
        if len(kept) > count:
            step = len(kept) / count
            kept = [kept[int(i * step)] for i in range(count)]
        return kept


def _decode_error(exc: Exception, fmt: str) -> ImageError:
    # FFmpeg's message without the errno and file name PyAV wraps around it
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split())[:200]
    return ImageError("corrupt", f"cannot decode {fmt} video: {type(exc).__name__}: {text}")


def _open(av, source: BinaryIO, fmt: str):
    try:
        return av.open(source, mode="r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise _decode_error(exc, fmt) from None


def sample_video(
    source: BinaryIO, fmt: str, count: int, draft: tuple[int, int] | None = None
) -> VideoFrames:
    """Decode ``count`` evenly spaced frames of an open video file; every failure an ImageError.

    The targets are the middles of ``count`` equal spans of the video's duration. A video
    whose frames stop well before the duration its header declares is ``truncated``.
    """
    av = _av()
    if count < 1:
        raise ValueError("count must be at least 1")
    container = _open(av, source, fmt)
    try:
        sampler = _Sampler(container, fmt, draft)
        duration = sampler.duration()
        frames: list[Image.Image] = []
        times: list[float] = []
        try:
            if not duration or duration <= 0:
                for t, image in sampler.forward(count):
                    times.append(max(0.0, t))
                    frames.append(image)
            else:
                span = duration / count
                for i in range(count):
                    target = (i + 0.5) * span
                    frame = sampler.at(target)
                    if frame is None:
                        continue
                    t = max(0.0, frame.time - sampler.start)
                    if times and abs(t - times[-1]) < 1e-6:
                        continue  # the stream ended: the same last frame again
                    times.append(t)
                    frames.append(sampler._image(frame))
        except av.error.FFmpegError as exc:
            if not frames:
                raise _decode_error(exc, fmt) from None
            log.debug("video decode stopped early: %s", exc)
        if not frames:
            raise ImageError("corrupt", f"{fmt} video: no frame could be decoded")
        if duration and times[-1] < duration - 2 * (duration / count) - 1.0:
            raise ImageError(
                "truncated",
                f"{fmt} file is truncated: its frames end at {times[-1]:.1f} s of the "
                f"{duration:.1f} s it declares",
            )
        n_frames = sampler.n_frames()
        width, height = sampler.upright()
        return VideoFrames(
            frames=frames,
            times=times,
            width=width,
            height=height,
            format=fmt,
            n_frames=n_frames,
            duration=duration,
            decoded=sampler.decoded,
        )
    finally:
        container.close()


def check_video(source: BinaryIO, size: int, fmt: str) -> None:
    """The completeness check the container allows without decoding: MP4 and MOV top-level
    boxes must tile the file (a cut download ends inside one). ImageError ``truncated``."""
    if fmt in ("MP4", "MOV"):
        reason = isobmff_file(source, size, fmt)
        source.seek(0)
        if reason:
            raise ImageError("truncated", reason)


def sample_bytes(
    data: bytes, count: int, draft: tuple[int, int] | None = None, fmt: str | None = None
) -> VideoFrames:
    """``sample_video`` of a video's bytes (an upload, say)."""
    fmt = fmt or sniff_video(data[:64]) or "video"
    stream = io.BytesIO(data)
    check_video(stream, len(data), fmt)
    return sample_video(stream, fmt, count, draft)


def frame_at(
    source: str | os.PathLike | BinaryIO, time: float | None, max_side: int = 1024
) -> VideoFrames:
    """The one frame at ``time`` seconds (the first frame when None), for a preview. The app
    passes a file opened by ``images.open_checked`` (never a FIFO, never past the size cap)."""
    av = _av()
    opened = isinstance(source, str | os.PathLike)
    fh = open(source, "rb") if opened else source  # noqa: SIM115 (closed below)
    try:
        fh.seek(0)
        fmt = sniff_video(fh.read(64)) or "video"
        fh.seek(0)
        container = _open(av, fh, fmt)
        try:
            sampler = _Sampler(container, fmt, (max_side, max_side))
            w, h = sampler.width, sampler.height
            scale = min(1.0, max_side / max(w, h))
            sampler.size = (max(1, round(w * scale)), max(1, round(h * scale)))
            try:
                frame = sampler.at(time or 0.0)
            except av.error.FFmpegError as exc:
                raise _decode_error(exc, fmt) from None
            if frame is None:
                raise ImageError("corrupt", f"{fmt} video: no frame could be decoded")
            image = sampler._image(frame)
            width, height = sampler.upright()
            return VideoFrames(
                frames=[image],
                times=[max(0.0, frame.time - sampler.start)],
                width=width,
                height=height,
                format=fmt,
                n_frames=sampler.n_frames(),
                duration=sampler.duration(),
                decoded=sampler.decoded,
            )
        finally:
            container.close()
    finally:
        if opened:
            fh.close()
