"""Small video files made with PyAV for the tests: solid-colour frames whose times are known."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

BLUE = (20, 20, 220)
RED = (230, 10, 10)

# the encoder each container gets: mpeg4 where it is allowed, VP9 for WebM
CODECS = {".mp4": "mpeg4", ".mov": "mpeg4", ".mkv": "mpeg4", ".avi": "mpeg4", ".webm": "libvpx-vp9"}


def red_between(start: float, stop: float) -> Callable[[float], tuple[int, int, int]]:
    """Colour by time: red (the 'NSFW-looking' frame to the red scorer) in [start, stop)."""
    return lambda t: RED if start <= t < stop else BLUE


def write_video(
    path: Path,
    *,
    seconds: float = 4.0,
    fps: int = 8,
    size: tuple[int, int] = (64, 64),
    colour: Callable[[float], tuple[int, int, int]] = lambda t: BLUE,
    gop: int = 8,
    codec: str | None = None,
    faststart: bool = False,
    rotation: int = 0,
    pixels: Callable[[float], np.ndarray] | None = None,
    live: bool = False,
) -> Path:
    """A video of solid frames, ``colour(t)`` at each frame time t (or ``pixels(t)``),
    a keyframe every ``gop``. ``rotation`` (counter-clockwise degrees) goes in the display
    matrix, as a phone records portrait video; ``live`` (Matroska only) muxes as to a pipe,
    which leaves the file without a duration or an index."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or CODECS[path.suffix.lower()]
    options = {"movflags": "faststart"} if faststart else {}
    w, h = size
    sink = _Pipe() if live else str(path)
    fmt = "matroska" if live else None
    with av.open(sink, mode="w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        if rotation:
            stream.set_display_rotation(rotation)
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "mpeg4":  # keyframes every gop frames, none added at scene changes
            stream.options = {"g": str(gop), "sc_threshold": "1000000000"}
        if codec == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        for i in range(round(seconds * fps)):
            if pixels is not None:
                rgb = pixels(i / fps)
            else:
                rgb = np.empty((h, w, 3), np.uint8)
                rgb[:] = colour(i / fps)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    if live:
        path.write_bytes(bytes(sink.data))
    return path


class _Pipe:
    """A write-only sink: the muxer cannot seek back to write a duration or an index."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk) -> int:
        self.data += bytes(chunk)
        return len(chunk)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 with one AAC audio stream and no video."""
    import av

    rate = 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("aac", rate=rate)
        samples = int(seconds * rate)
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / rate)).astype(np.float32)
        step = 1024
        for start in range(0, samples, step):
            chunk = tone[start : start + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cut(path: Path, dest: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``path``'s bytes, as an interrupted download leaves it."""
    data = path.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def zero_tailed(path: Path, dest: Path, fraction: float = 0.5) -> Path:
    """``path`` with its bytes from ``fraction`` on zeroed: a preallocated, unfinished download."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * fraction)
    data[start:] = bytes(len(data) - start)
    dest.write_bytes(bytes(data))
    return dest


def scribbled(path: Path, dest: Path, seed: int = 0) -> Path:
    """``path`` with its bytes past the header overwritten by noise (a corrupt file)."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    start = 64
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    dest.write_bytes(bytes(data))
    return dest
