"""Decoding of untrusted images in spawned worker processes, each image under a time limit.

One pool, two ways in: ``DecodePool.map`` streams a scan's paths through the workers with a
per-file limit and a bound on the results in flight; ``DecodePool.decode`` is the blocking,
one-task call that the REST face makes from many request threads, under each request's
deadline. Both use the same long-lived, warmed workers and the same policy: a worker that
runs past its limit, dies, or is interrupted mid-task is killed, counted in ``restarts``,
and replaced by a fresh one that is started and warmed in a background thread.
"""

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
from multiprocessing.connection import Connection
from typing import Any

from .errors import ImageError
from .images import Decoded, Failed, Result, decode_image, read_bytes
from .media import decode_video_path
from .preprocess import Preprocessing
from .video import is_video_name

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
# How long a worker may take to start and import its decoder before the pool gives up on it.
WORKER_START_S = 60.0
# Waits are cut into slices this long, so that closing the pool is noticed promptly.
_SLICE_S = 0.25


def decode_path(
    path: str, spec: Preprocessing, use_draft: bool, max_frames: int, video_frames: int = 16
) -> Result:
    """Read, hash and decode one file (``decode_image``; a video by its name is streamed
    instead, ``video_frames`` of it sampled); every failure is a ``Failed``."""
    if is_video_name(path):
        return decode_video_path(path, spec, use_draft, video_frames, max_frames)
    return decode_image(
        functools.partial(read_bytes, path),
        path,
        spec,
        use_draft=use_draft,
        max_frames=max_frames,
        video_frames=video_frames,
    )


# A decoder runs in the workers, so it must be a module-level function (spawn imports it).
Decoder = Callable[[Any, Preprocessing, bool, int], Result]


class _WarmUp:
    """Sent to a new worker; answered once the worker runs, that is once its imports are done."""


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
        if isinstance(task, _WarmUp):
            conn.send(True)
            continue
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
    """One spawned decode process and the parent's end of its pipe."""

    def __init__(self, ctx, pool: DecodePool) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, pool.decoder, pool.spec, pool.use_draft, pool.max_frames),
            daemon=True,
        )
        self.proc.start()
        child.close()
        with contextlib.suppress(OSError):
            self.conn.send(_WarmUp())

    def settle(self, timeout: float = WORKER_START_S) -> _Worker:
        """Wait for the warm-up answer; RuntimeError (and the process killed) without one."""
        with contextlib.suppress(EOFError, OSError):
            if self.conn.poll(timeout) and self.conn.recv() is True:
                return self
        self.stop(kill=True)
        raise RuntimeError(
            f"a decoder process did not start (exit code {self.proc.exitcode}, "
            f"waited up to {timeout:g} s)"
        )

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


class _NoWorker:
    """Put in the idle queue when a replacement could not be started: takers learn why."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class DecodePool:
    """Decodes images in ``workers`` spawned processes that live as long as the pool.

    ``map(paths)`` yields results in completion order, each file under ``timeout_s`` from
    the moment a worker takes it. At most ``queue_size`` results are in flight (being
    decoded, queued, or held by the consumer until it calls ``release``), so memory stays
    flat on a folder of any size. A map is one pass: when it ends, the pool is closed.

    ``decode(task, deadline)`` blocks until one task is decoded, waiting for a free worker
    no later than ``deadline`` (``time.monotonic()``); it may be called from many threads.
    ``start()`` spawns the workers and waits until each is warm, so that no task waits on
    a worker's imports; both ways in call it when needed.

    ``name_of(task)`` is the name a ``Failed`` carries when the pool, not the decoder, fails
    a task (a path itself by default). ``workers=0`` decodes in the calling thread: no
    isolation, and ``decode`` checks its deadline only before the task starts.
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
        name_of: Callable[[Any], str] = str,
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
        self.name_of = name_of
        self.restarts = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._permits = threading.Semaphore(queue_size)
        self._lock = threading.Lock()  # counters, and idle hand-backs against close()
        self._start_lock = threading.Lock()
        self._started = False
        self._closed = threading.Event()
        self._ctx = mp.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker | _NoWorker] = queue.SimpleQueue()

    # -- workers -----------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the workers side by side and wait until each is warm (once; thread-safe)."""
        if self.workers <= 0:
            return
        with self._start_lock:
            if self._started or self._closed.is_set():
                return
            start_resource_tracker()
            fresh: list[_Worker] = []
            try:
                for _ in range(self.workers):  # importing side by side
                    fresh.append(_Worker(self._ctx, self))
                for w in fresh:
                    w.settle()
            except BaseException:
                for w in fresh:
                    w.stop(kill=True)
                raise
            for w in fresh:
                self._hand_back(w)
            self._started = True

    def close(self) -> None:
        """Stop every idle worker; a busy one stops when its task ends. Idempotent."""
        with self._lock:
            self._closed.set()
        idle = []
        while True:
            try:
                idle.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for w in idle:
            if isinstance(w, _Worker):
                with contextlib.suppress(OSError):
                    w.conn.send(None)  # all told first, so that they exit side by side
        for w in idle:
            if isinstance(w, _Worker):
                w.stop()

    def _hand_back(self, w: _Worker) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._idle.put(w)
                return
        w.stop()

    def _replace(self) -> None:
        """In its own thread: a fresh, warmed worker joins the idle ones."""
        if self._closed.is_set():
            return
        try:
            w = _Worker(self._ctx, self).settle()
        except BaseException as exc:
            self._idle.put(_NoWorker(exc))
            return
        self._hand_back(w)

    def _discard(self, w: _Worker) -> None:
        """The one restart policy: kill the worker and, unless closing, replace it."""
        w.stop(kill=True)
        if self._closed.is_set():
            return
        with self._lock:
            self.restarts += 1
        threading.Thread(target=self._replace, name="decode-replace", daemon=True).start()

    def _checkout(self, deadline: float | None) -> _Worker | None:
        """An idle worker, waiting no later than ``deadline`` (None: as long as it takes);
        None when the deadline passes or the pool closes."""
        while not self._closed.is_set():
            wait = _SLICE_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            try:
                w = self._idle.get(timeout=wait)
            except queue.Empty:
                continue
            if isinstance(w, _NoWorker):
                raise RuntimeError(f"no decoder process could be started: {w.error}")
            return w
        return None

    def _run(self, w: _Worker, task: Any, deadline: float, late: str) -> Result:
        """Decode ``task`` on a checked-out worker, answering no later than ``deadline``."""
        healthy = False
        try:
            w.conn.send(task)
            while True:
                left = deadline - time.monotonic()
                if w.conn.poll(max(0.0, min(left, _SLICE_S))):
                    result = w.conn.recv()
                    healthy = True
                    return result
                if left <= 0:
                    error = ImageError("timeout", late)
                    break
                if self._closed.is_set():
                    error = ImageError("timeout", "the decode pool closed during this image")
                    break
        except (EOFError, OSError):
            w.proc.join(1)
            code = w.proc.exitcode
            error = ImageError("crash", f"the decoder process died (exit code {code})")
        finally:
            if healthy:
                self._hand_back(w)
            else:  # stuck, dead or interrupted mid-task: a fresh process takes its place
                self._discard(w)
        return Failed(self.name_of(task), error)

    # -- one task, blocking (the REST face) --------------------------------------------

    def decode(self, task: Any, deadline: float) -> Result:
        """Decode one task, waiting for a free worker no later than ``deadline``."""
        late = "decoding ran past the request's time limit"
        if time.monotonic() >= deadline:
            return Failed(self.name_of(task), ImageError("timeout", late))
        if self.workers <= 0:
            return self.decoder(task, self.spec, self.use_draft, self.max_frames)
        self.start()  # normally done when the app starts
        try:
            w = self._checkout(deadline)
        except RuntimeError as exc:  # a replacement failed to start: try again for later
            threading.Thread(target=self._replace, name="decode-replace", daemon=True).start()
            return Failed(self.name_of(task), ImageError("crash", str(exc)))
        if w is None:
            return Failed(self.name_of(task), ImageError("timeout", late))
        return self._run(w, task, deadline, late)

    def decode_next(self, task: Any) -> Result:
        """Decode one task under a scan's rule: its time limit counts from when a worker takes
        it (as in ``map``), so a replacement still starting after a crash or a hang costs the
        next file nothing. The Ray engine's workers call this, one file at a time."""
        if self.workers <= 0:
            return self.decoder(task, self.spec, self.use_draft, self.max_frames)
        self.start()
        try:
            w = self._checkout(None)
        except RuntimeError as exc:  # a replacement failed to start: try again for later
            threading.Thread(target=self._replace, name="decode-replace", daemon=True).start()
            return Failed(self.name_of(task), ImageError("crash", str(exc)))
        if w is None:
            closed = ImageError("timeout", "the decode pool closed during this image")
            return Failed(self.name_of(task), closed)
        late = f"decoding took longer than {self.timeout_s:g} s"
        return self._run(w, task, time.monotonic() + self.timeout_s, late)

    # -- a stream of tasks (scan) ------------------------------------------------------

    # The consumer calls this once it no longer holds a result's pixels.
    def release(self, n: int = 1) -> None:
        with self._lock:
            self._in_flight -= n
        for _ in range(n):
            self._permits.release()

    def _take_permit(self) -> bool:
        while not self._closed.is_set():
            if self._permits.acquire(timeout=0.05):
                with self._lock:
                    self._in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self._in_flight)
                return True
        return False

    def map(self, items: Iterable[Any]) -> Iterator[Result]:
        """Decode every item, yielding results in completion order; closes the pool at the end."""
        try:
            if self.workers <= 0:
                yield from self._map_inline(items)
            else:
                yield from self._map_processes(items)
        finally:
            self.close()

    def _map_inline(self, items: Iterable[Any]) -> Iterator[Result]:
        for item in items:
            if not self._take_permit():
                return
            yield self.decoder(item, self.spec, self.use_draft, self.max_frames)

    def _map_processes(self, items: Iterable[Any]) -> Iterator[Result]:
        self.start()
        results: queue.Queue = queue.Queue()
        done = object()
        source = iter(items)
        take = threading.Lock()  # an iterator (a generator above all) is not thread-safe
        late = f"decoding took longer than {self.timeout_s:g} s"

        def feed() -> None:
            # One feeder per worker: take a permit, then an item, then a free worker.
            try:
                while self._take_permit():
                    with take:
                        item = next(source, done)
                    if item is done:
                        self.release()
                        return
                    w = self._checkout(None)
                    if w is None:  # closed
                        self.release()
                        return
                    results.put(self._run(w, item, time.monotonic() + self.timeout_s, late))
            except BaseException as exc:  # surfaces in the consumer, never a silent hang
                results.put(exc)
            finally:
                results.put(done)

        feeders = [
            threading.Thread(target=feed, name="decode-feed", daemon=True)
            for _ in range(self.workers)
        ]
        for t in feeders:
            t.start()
        try:
            running = len(feeders)
            while running:
                item = results.get()
                if item is done:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self._closed.set()
            for t in feeders:
                t.join()
