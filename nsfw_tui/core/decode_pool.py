"""Decoding of untrusted files in spawned worker processes, with a per-file time limit."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait

from .errors import ImageError
from .images import Decoded, Failed, Result, decode_image, read_bytes
from .preprocess import Preprocessing

__all__ = [
    "WORKER_MEMORY_BYTES",
    "DecodePool",
    "Decoded",
    "Decoder",
    "Failed",
    "Result",
    "decode_path",
    "start_resource_tracker",
]

# Caps a worker's address space: a decoder that runs away fails alone, not the machine.
WORKER_MEMORY_BYTES = 3 * 1024**3


def decode_path(path: str, spec: Preprocessing, use_draft: bool, max_frames: int) -> Result:
    """Read, hash and decode one file (``decode_image``); every failure is a ``Failed``."""
    return decode_image(
        functools.partial(read_bytes, path),
        path,
        spec,
        use_draft=use_draft,
        max_frames=max_frames,
    )


Decoder = Callable[[str, Preprocessing, bool, int], "Result"]


def _worker_main(
    conn: Connection, decoder: Decoder, spec: Preprocessing, use_draft: bool, max_frames: int
) -> None:
    # Ctrl+C goes to the whole process group; the parent decides what stops, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(decoder(task, spec, use_draft, max_frames))


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with a real stderr.

    The tracker hands ``sys.stderr``'s descriptor to its child; under Textual, stderr is a
    capture object whose ``fileno()`` is -1, and spawning then fails with "bad value(s) in
    fds_to_keep". The CLI calls this before an app starts; the pool calls it as a fallback.
    """
    from multiprocessing import resource_tracker

    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else -1
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0 or sys.__stderr__ is None:
        resource_tracker.ensure_running()
        return
    captured = sys.stderr
    sys.stderr = sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = captured


class _Worker:
    def __init__(self, ctx, pool: DecodePool) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, pool.decoder, pool.spec, pool.use_draft, pool.max_frames),
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.task: str | None = None
        self.deadline = 0.0

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(None)
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=2)
        self.conn.close()


class DecodePool:
    """Decodes paths in ``workers`` spawned processes, results in completion order.

    At most ``queue_size`` decoded results are in flight (being decoded, queued, or held by
    the consumer until it calls ``release``), so memory stays flat on a folder of any size.
    ``workers=0`` decodes in the calling thread (no isolation; for small jobs and tests).
    """

    def __init__(
        self,
        spec: Preprocessing,
        *,
        workers: int = 2,
        queue_size: int = 64,
        timeout_s: float = 20.0,
        use_draft: bool = True,
        max_frames: int = 8,
        decoder: Decoder = decode_path,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.spec = spec
        self.workers = workers
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.use_draft = use_draft
        self.max_frames = max_frames
        self.decoder = decoder
        self._permits = threading.Semaphore(queue_size)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self.restarts = 0
        self._stop = threading.Event()

    # The consumer calls this once it no longer holds a result's pixels.
    def release(self, n: int = 1) -> None:
        with self._lock:
            self._in_flight -= n
        for _ in range(n):
            self._permits.release()

    def _take_permit(self, block: bool = True) -> bool:
        while not self._stop.is_set():
            if self._permits.acquire(timeout=0.05 if block else 0):
                with self._lock:
                    self._in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self._in_flight)
                return True
            if not block:
                return False
        return False

    def close(self) -> None:
        self._stop.set()

    def map(self, paths: Iterable[str]) -> Iterator[Result]:
        if self.workers <= 0:
            yield from self._map_inline(paths)
        else:
            yield from self._map_processes(paths)

    def _map_inline(self, paths: Iterable[str]) -> Iterator[Result]:
        for path in paths:
            if not self._take_permit():
                return
            yield self.decoder(path, self.spec, self.use_draft, self.max_frames)

    def _map_processes(self, paths: Iterable[str]) -> Iterator[Result]:
        results: queue.Queue = queue.Queue()
        done = object()
        thread = threading.Thread(
            target=self._dispatch, args=(iter(paths), results, done), daemon=True
        )
        thread.start()
        try:
            while True:
                item = results.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            thread.join()

    def _dispatch(self, paths: Iterator[str], results: queue.Queue, done: object) -> None:
        ctx = mp.get_context("spawn")
        pool: list[_Worker] = []
        try:
            start_resource_tracker()
            pool = [_Worker(ctx, self) for _ in range(self.workers)]
            exhausted = False
            while not self._stop.is_set():
                for w in pool:
                    if w.task is None and not exhausted:
                        # Never block here: busy workers' deadlines must still be checked.
                        if not self._take_permit(block=False):
                            break
                        path = next(paths, None)
                        if path is None:
                            exhausted = True
                            self.release()
                            break
                        w.task, w.deadline = path, time.monotonic() + self.timeout_s
                        w.conn.send(path)
                busy = [w for w in pool if w.task is not None]
                if not busy:
                    if exhausted:
                        break
                    self._stop.wait(0.02)  # every permit is held by the consumer
                    continue
                now = time.monotonic()
                timeout = max(0.0, min(w.deadline for w in busy) - now)
                ready = wait([w.conn for w in busy], timeout=min(timeout, 0.25))
                for i, w in enumerate(pool):
                    if w.task is None:
                        continue
                    if w.conn in ready:
                        try:
                            results.put(w.conn.recv())
                            w.task = None
                            continue
                        except (EOFError, OSError):
                            reason = ImageError(
                                "crash", f"the decoder process died (exit code {w.proc.exitcode})"
                            )
                    elif time.monotonic() >= w.deadline:
                        reason = ImageError(
                            "timeout", f"decoding took longer than {self.timeout_s:g} s"
                        )
                    else:
                        continue
                    results.put(Failed(w.task, reason))
                    w.stop(kill=True)
                    self.restarts += 1
                    pool[i] = _Worker(ctx, self)
        except BaseException as exc:  # surfaces in the consumer, never a silent hang
            results.put(exc)
        finally:
            for w in pool:
                w.stop(kill=w.task is not None)
            results.put(done)
