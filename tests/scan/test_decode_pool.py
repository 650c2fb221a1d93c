"""The one decode pool, in real spawned processes: scan's stream (map) and the REST face's
blocking call (decode) share its workers and its timeout and restart policy."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import time

import numpy as np
import pytest
from support import imagegen, serve
from support.imagegen import StartsOnce, photo, photo_folder, save

from nsfw_tui.core.decode_pool import DecodePool
from nsfw_tui.core.images import Decoded, Failed
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.serve.decoders import decode_task, task_name

SPEC = IMAGENET(16)


def request_pool(**kwargs) -> DecodePool:
    """A pool as the REST face makes one: tasks are ("bytes" | "path", name, payload)."""
    kwargs.setdefault("decoder", decode_task)
    return DecodePool(SPEC, name_of=task_name, **kwargs)


def soon(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


def wait_for(condition, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_scans_stream_and_requests_call_give_identical_hashes_and_pixels(tmp_path):
    path = save(photo((640, 480), 5), tmp_path / "p.jpg", quality=90)
    [scanned] = list(DecodePool(SPEC, workers=1).map([str(path)]))
    pool = request_pool(workers=1)
    try:
        pool.start()
        sent = pool.decode(("bytes", "images[0]", path.read_bytes()), soon())
    finally:
        pool.close()
    assert isinstance(scanned, Decoded) and isinstance(sent, Decoded)
    assert (scanned.path, sent.path) == (str(path), "images[0]")
    assert (scanned.sha256, scanned.size) == (sent.sha256, sent.size)
    assert (scanned.width, scanned.height, scanned.n_frames) == (640, 480, 1)
    assert len(scanned.pixels) == len(sent.pixels) == 1
    np.testing.assert_array_equal(scanned.pixels[0], sent.pixels[0])


def test_a_hung_decode_in_map_times_out_and_a_fresh_worker_takes_the_rest(tmp_path):
    folder = tmp_path / "p"
    good = photo_folder(folder, 3, size=(64, 48))
    shutil.copy(good[0], folder / "hang.jpg")
    pool = DecodePool(SPEC, workers=1, timeout_s=1.5, decoder=imagegen.faulty_decoder)
    started = time.monotonic()
    results = list(pool.map([str(folder / "hang.jpg"), *map(str, good)]))
    took = time.monotonic() - started
    [hung] = [r for r in results if isinstance(r, Failed)]
    assert hung.path == str(folder / "hang.jpg")
    assert hung.error.kind == "timeout" and "1.5 s" in hung.error.reason
    assert sorted(r.path for r in results if isinstance(r, Decoded)) == list(map(str, good))
    assert pool.restarts == 1
    assert took < 30


def test_a_hung_decode_in_a_request_times_out_and_a_fresh_worker_answers_the_next():
    pool = request_pool(workers=1, decoder=serve.faulty_decoder)
    try:
        pool.start()
        started = time.monotonic()
        hung = pool.decode(("bytes", "images[0]", b"SLOW"), started + 1.5)
        took = time.monotonic() - started
        assert isinstance(hung, Failed) and hung.path == "images[0]"
        assert hung.error.kind == "timeout"
        assert 1.4 < took < 10
        assert pool.restarts == 1
        nxt = pool.decode(("bytes", "images[1]", serve.jpeg_bytes()), soon())
        assert isinstance(nxt, Decoded) and nxt.path == "images[1]"
        assert pool.restarts == 1
    finally:
        pool.close()


def test_a_crash_in_a_request_costs_one_image_and_the_worker_is_replaced():
    pool = request_pool(workers=1, decoder=serve.faulty_decoder)
    try:
        crashed = pool.decode(("bytes", "images[0]", b"CRASH"), soon())
        assert isinstance(crashed, Failed) and crashed.error.kind == "crash"
        assert pool.restarts == 1
        ok = pool.decode(("bytes", "images[1]", serve.jpeg_bytes()), soon())
        assert isinstance(ok, Decoded)
    finally:
        pool.close()


def test_a_request_waits_for_a_free_worker_no_later_than_its_deadline():
    pool = request_pool(workers=1, decoder=serve.faulty_decoder)
    try:
        pool.start()
        late = pool.decode(("bytes", "images[0]", serve.jpeg_bytes()), time.monotonic() - 1)
        assert isinstance(late, Failed) and late.error.kind == "timeout"
        assert pool.restarts == 0  # nothing was sent to a worker
    finally:
        pool.close()


def test_no_worker_outlives_the_pool_when_the_scan_stops_early(tmp_path):
    paths = [str(p) for p in photo_folder(tmp_path / "p", 6, size=(64, 48))]
    before = set(mp.active_children())
    pool = DecodePool(SPEC, workers=2, queue_size=2)
    for _ in pool.map(paths):
        break  # the consumer stops after one result; the generator closes the pool
    assert wait_for(lambda: not set(mp.active_children()) - before)
    assert pool.restarts == 0


def test_a_worker_that_cannot_start_is_an_error_not_a_hang(tmp_path):
    [path] = photo_folder(tmp_path / "p", 1, size=(64, 48))
    marker = tmp_path / "started"
    marker.touch()  # every worker finds the marker taken and dies at start
    pool = DecodePool(StartsOnce(SPEC, str(marker)), workers=1)
    with pytest.raises(RuntimeError, match="did not start"):
        list(pool.map([str(path)]))


@pytest.mark.slow
def test_a_replacement_that_cannot_start_fails_the_stream_and_the_next_request(tmp_path):
    folder = tmp_path / "p"
    [good] = photo_folder(folder, 1, size=(64, 48))
    shutil.copy(good, folder / "hang.jpg")
    spec = StartsOnce(SPEC, str(tmp_path / "first"))  # the first worker starts, no other does
    pool = DecodePool(spec, workers=1, timeout_s=1.0, decoder=imagegen.faulty_decoder)
    with pytest.raises(RuntimeError, match="no decoder process could be started"):
        list(pool.map([str(folder / "hang.jpg"), str(good)]))

    spec = StartsOnce(SPEC, str(tmp_path / "first-request"))
    pool = DecodePool(spec, workers=1, decoder=serve.faulty_decoder, name_of=task_name)
    try:
        hung = pool.decode(("bytes", "images[0]", b"SLOW"), time.monotonic() + 1.0)
        assert hung.error.kind == "timeout"
        nxt = pool.decode(("bytes", "images[1]", serve.jpeg_bytes()), soon())
        assert isinstance(nxt, Failed) and nxt.error.kind == "crash"
        assert "no decoder process could be started" in nxt.error.reason
    finally:
        pool.close()
