"""The grid's thumbnails: decoded once at small size through the safe loader, cached by hash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support.imagegen import photo, save, truncated_jpeg

from nsfw_tui.core.images import hash_file
from nsfw_tui.core.thumbnails import THUMB_SIDE, ThumbnailCache, thumbnail_pool


@pytest.fixture
def inline():
    pool = thumbnail_pool(workers=0, timeout_s=20)
    yield pool
    pool.close()


def test_a_thumbnail_fits_the_box_keeps_its_ratio_and_is_cached_under_its_hash(tmp_path, inline):
    path = save(photo((800, 400), seed=3), tmp_path / "wide.jpg", quality=90)
    cache = ThumbnailCache(tmp_path / "cache")
    sha, _ = hash_file(path)
    first = cache.get(str(path), None, inline, 20)  # the hash not known yet: learnt here
    assert first.error is None and not first.cached and first.sha256 == sha
    assert first.image.size == (THUMB_SIDE, THUMB_SIDE // 2)
    assert cache.path_for(sha).is_file()
    again = cache.get(str(path), sha, inline, 20)
    assert again.cached and again.image.size == first.image.size
    # fresh or from the cache, the same pixels: what is shown never depends on the path taken
    assert np.array_equal(np.asarray(again.image), np.asarray(first.image))
    original = np.asarray(photo((800, 400), seed=3).resize(first.image.size), float)
    assert np.abs(np.asarray(first.image, float) - original).mean() < 8, "the same picture"


def test_a_damaged_cache_entry_is_decoded_again_and_replaced(tmp_path, inline):
    path = save(photo((300, 200), seed=1), tmp_path / "a.png")
    cache = ThumbnailCache(tmp_path / "cache")
    sha, _ = hash_file(path)
    cache.get(str(path), sha, inline, 20)
    cache.path_for(sha).write_bytes(b"\xff\xd8\xff not a jpeg any more")
    thumb = cache.get(str(path), sha, inline, 20)
    assert thumb.image is not None and not thumb.cached
    assert cache.read(sha) is not None, "the entry was written again"


def test_an_oversized_cache_entry_is_not_trusted(tmp_path, inline):
    path = save(photo((300, 200), seed=2), tmp_path / "a.png")
    cache = ThumbnailCache(tmp_path / "cache")
    sha, _ = hash_file(path)
    cache.path_for(sha).parent.mkdir(parents=True)
    Image.new("RGB", (4000, 10)).save(cache.path_for(sha))
    thumb = cache.get(str(path), sha, inline, 20)
    assert not thumb.cached and max(thumb.image.size) <= THUMB_SIDE


def test_an_unreadable_file_gives_its_reason_and_nothing_is_cached(tmp_path, inline):
    path = truncated_jpeg(tmp_path / "broken.jpg", 0.3)
    (tmp_path / "empty.png").write_bytes(b"")
    cache = ThumbnailCache(tmp_path / "cache")
    broken = cache.get(str(path), None, inline, 20)
    assert broken.image is None and broken.error.startswith("truncated: ")
    empty = cache.get(str(tmp_path / "empty.png"), None, inline, 20)
    assert empty.image is None and empty.error.startswith("empty: ")
    missing = cache.get(str(tmp_path / "gone.png"), None, inline, 20)
    assert missing.image is None and missing.error.startswith("missing: ")
    assert not list((tmp_path / "cache").rglob("*.jpg"))


def test_a_read_only_cache_costs_the_cache_not_the_thumbnail(tmp_path, inline):
    path = save(photo((120, 90), seed=4), tmp_path / "a.png")
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    thumb = ThumbnailCache(tmp_path / "cache").get(str(path), None, inline, 20)
    assert thumb.image is not None and thumb.error is None


def test_thumbnails_decode_in_a_spawned_worker_process(tmp_path):
    good = save(photo((640, 480), seed=5), tmp_path / "good.jpg", quality=90)
    broken = truncated_jpeg(tmp_path / "broken.jpg", 0.3)
    pool = thumbnail_pool(workers=1, timeout_s=20)
    try:
        cache = ThumbnailCache(tmp_path / "cache")
        thumb = cache.get(str(good), None, pool, 20)
        assert thumb.image.size == (THUMB_SIDE, THUMB_SIDE * 3 // 4)
        failed = cache.get(str(broken), None, pool, 20)
        assert failed.image is None and failed.error.startswith("truncated: ")
        assert pool.restarts == 0
    finally:
        pool.close()
