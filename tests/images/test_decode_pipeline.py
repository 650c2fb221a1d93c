"""The one decode pipeline (core.images.decode_image): every route in gives the same result.

Scan reads a file by its path (decode_path), the REST face decodes uploaded bytes or a file
read confined under its root (decode_task); all three must hash, decode, preprocess and fail
the same way.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
from support.imagegen import animated_gif, photo, save, truncated_jpeg

from nsfw_tui.core.decode_pool import decode_path
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import Decoded, Failed, decode_file, decode_image
from nsfw_tui.core.preprocess import IMAGENET, OPEN_NSFW
from nsfw_tui.serve import decode_task


def three_routes(path, spec, **kwargs):
    """(scan's path route, serve's bytes route, serve's confined path route) for one file."""
    use_draft, max_frames = kwargs.get("use_draft", True), kwargs.get("max_frames", 8)
    real = os.path.realpath(path)
    return (
        decode_path(str(path), spec, use_draft, max_frames),
        decode_task(("bytes", "images[0]", path.read_bytes()), spec, use_draft, max_frames),
        decode_task(
            ("path", "inputs[0]", (real, os.path.dirname(real))), spec, use_draft, max_frames
        ),
    )


def assert_same_image(a: Decoded, b: Decoded) -> None:
    assert isinstance(a, Decoded) and isinstance(b, Decoded)
    fields = ("sha256", "size", "width", "height", "format", "n_frames")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert len(a.pixels) == len(b.pixels)
    for pa, pb in zip(a.pixels, b.pixels, strict=True):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("spec", [OPEN_NSFW, IMAGENET(64)], ids=["open_nsfw", "imagenet64"])
def test_scan_and_serve_routes_give_the_same_hash_and_pixels(tmp_path, spec):
    path = save(photo((640, 480), 3), tmp_path / "p.jpg", quality=90)  # drafted JPEG
    by_path, by_bytes, confined = three_routes(path, spec)
    assert by_path.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same_image(by_path, by_bytes)
    assert_same_image(by_path, confined)
    assert (by_path.path, by_bytes.path, confined.path) == (str(path), "images[0]", "inputs[0]")


def test_an_animation_samples_the_same_frames_on_every_route(tmp_path):
    path = animated_gif(tmp_path / "a.gif", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9)])
    by_path, by_bytes, confined = three_routes(path, IMAGENET(16), max_frames=3)
    assert by_path.n_frames == 4 and len(by_path.pixels) == 3
    assert_same_image(by_path, by_bytes)
    assert_same_image(by_path, confined)


def test_a_bad_file_fails_alike_on_every_route_with_its_hash(tmp_path):
    path = truncated_jpeg(tmp_path / "cut.jpg")
    data = path.read_bytes()
    results = three_routes(path, IMAGENET(16))
    assert all(isinstance(r, Failed) for r in results)
    assert {(r.error.kind, r.error.reason) for r in results} == {
        ("truncated", "JPEG file is incomplete: its image data ends without an end-of-image marker")
    }
    sha = hashlib.sha256(data).hexdigest()
    assert all((r.sha256, r.size) == (sha, len(data)) for r in results)
    assert all((r.error.sha256, r.error.size) == (sha, len(data)) for r in results)
    with pytest.raises(ImageError) as raised:
        decode_file(path, IMAGENET(16))
    assert (raised.value.kind, raised.value.sha256) == ("truncated", sha)


def test_bytes_that_were_never_read_leave_no_hash(tmp_path):
    gone = decode_path(str(tmp_path / "gone.jpg"), IMAGENET(16), True, 8)
    assert isinstance(gone, Failed) and gone.error.kind == "missing"
    assert (gone.path, gone.sha256, gone.size) == (str(tmp_path / "gone.jpg"), None, None)
    empty = decode_task(("bytes", "images[0]", b""), IMAGENET(16), True, 8)
    assert isinstance(empty, Failed) and empty.error.kind == "empty"


class BrokenSpec:
    """A preprocessing step that fails with ``error`` once the image has decoded."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def draft_size(self):
        return None

    def pixels(self, frame):
        raise self.error


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (MemoryError(), "bomb", "ran out of memory while decoding"),
        (ValueError("bad shape"), "corrupt", "ValueError: bad shape"),
        (ImageError("unsupported", "no such mode"), "unsupported", "no such mode"),
    ],
)
def test_every_failure_after_the_read_is_a_failed_with_the_hash(error, kind, reason):
    buf = io.BytesIO()
    photo((40, 30)).save(buf, "PNG")
    data = buf.getvalue()
    out = decode_image(data, "x", BrokenSpec(error))
    assert isinstance(out, Failed)
    assert (out.path, out.error.kind, out.error.reason) == ("x", kind, reason)
    assert (out.sha256, out.size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_reader_that_raises_is_a_failed_without_a_hash():
    def reader() -> bytes:
        raise RuntimeError("disk on fire")

    out = decode_image(reader, "r", IMAGENET(16))
    assert isinstance(out, Failed)
    assert (out.error.kind, out.error.reason) == ("corrupt", "RuntimeError: disk on fire")
    assert (out.sha256, out.size) == (None, None)
