"""A video's thumbnail: the frame the preview shows, decoded in the pool, cached by frame."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from support.videogen import red_between, write_video

from nsfw_tui.core.thumbnails import THUMB_SIDE, ThumbnailCache, thumbnail_pool
from nsfw_tui.core.video import EXTRA_LINE, frame_at

pytest.importorskip("av")

RED_AT = 2.125  # the first red frame of four seconds at 8 frames a second, red in [2, 2.5)


def colours(image) -> tuple[float, float]:
    """Mean red and blue of a thumbnail."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb[..., 0].mean(), rgb[..., 2].mean()


@pytest.fixture
def inline():
    pool = thumbnail_pool(workers=0, timeout_s=20)
    yield pool
    pool.close()


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.mp4", size=(320, 240), colour=red_between(2.0, 2.5))


def test_a_video_thumbnail_is_its_frame_at_the_time_asked_and_cached_by_that_frame(
    tmp_path, inline, clip
):
    cache = ThumbnailCache(tmp_path / "cache")
    red = cache.get(str(clip), None, inline, 20, RED_AT)
    assert red.error is None and not red.cached
    assert red.image.size == (THUMB_SIDE, THUMB_SIDE * 3 // 4)
    r, b = colours(red.image)
    assert r > 180 and b < 60, "the red frame, not the first"
    sha = red.sha256
    assert cache.path_for(sha, RED_AT).is_file()
    assert cache.read(sha) is None, "the frame is part of the key"

    # no time known (not scored yet): the first frame, blue, under a key of its own
    first = cache.get(str(clip), sha, inline, 20)
    assert first.error is None and not first.cached
    r, b = colours(first.image)
    assert b > 180 and r < 60
    assert cache.path_for(sha).is_file() and cache.path_for(sha) != cache.path_for(sha, RED_AT)

    # each frame comes back from the cache as it was made
    again = cache.get(str(clip), sha, inline, 20, RED_AT)
    assert again.cached and np.array_equal(np.asarray(again.image), np.asarray(red.image))
    assert colours(cache.read(sha))[1] > 180


def test_a_video_thumbnail_is_decoded_in_a_spawned_worker_process(tmp_path, clip):
    pool = thumbnail_pool(workers=1, timeout_s=20)
    try:
        thumb = ThumbnailCache(tmp_path / "cache").get(str(clip), None, pool, 20, RED_AT)
        assert thumb.error is None and colours(thumb.image)[0] > 180
        assert pool.restarts == 0
    finally:
        pool.close()


def test_a_video_slower_than_the_time_limit_is_a_timeout_and_its_worker_replaced(tmp_path):
    # one keyframe for the whole clip: the frame near its end decodes every frame before it
    slow = write_video(
        tmp_path / "slow.mp4",
        seconds=40,
        fps=25,
        size=(320, 240),
        gop=100_000,
        colour=lambda t: (int(t * 8) % 256, 40, 40),
    )
    assert frame_at(slow, 39.0).decoded > 300, "the frame is as costly as meant"
    pool = thumbnail_pool(workers=1, timeout_s=0.01)
    try:
        pool.start()
        cache = ThumbnailCache(tmp_path / "cache")
        thumb = cache.get(str(slow), None, pool, 0.01, 39.0)
        assert thumb.image is None and thumb.error.startswith("timeout: ")
        assert pool.restarts == 1, "the worker decoding it was killed, not the caller"
        assert not list((tmp_path / "cache").rglob("*.jpg"))
    finally:
        pool.close()


def test_without_pyav_a_video_thumbnail_names_the_extra(tmp_path, inline, clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    thumb = ThumbnailCache(tmp_path / "cache").get(str(clip), None, inline, 20, RED_AT)
    assert thumb.image is None and thumb.error == f"needs-extra: {EXTRA_LINE}"
    assert thumb.sha256 is not None, "the bytes were read: the failure belongs to them"
    assert not list((tmp_path / "cache").rglob("*.jpg"))


def test_a_file_named_as_a_video_that_is_an_image_gets_an_image_thumbnail(tmp_path, inline):
    from support.imagegen import photo, save

    path = save(photo((200, 100), seed=2), tmp_path / "still.png")
    named = path.rename(tmp_path / "still.mp4")
    thumb = ThumbnailCache(tmp_path / "cache").get(str(named), None, inline, 20)
    assert thumb.error is None and thumb.image.size == (THUMB_SIDE, THUMB_SIDE // 2)
