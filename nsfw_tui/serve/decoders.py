"""Decoding for the REST face: untrusted bytes in spawned worker processes with a deadline."""

# Nothing here may import fastapi, starlette, anyio or uvicorn: spawned decode workers import
# this module for `decode_task`, and the base install has none of them.

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.decode_pool import Failed, _Worker
from ..core.errors import ImageError
from ..core.images import Result, decode_image
from ..core.preprocess import Preprocessing
from .paths import read_confined

Task = tuple[str, str, Any]  # ("bytes", name, data) | ("path", name, (real_path, root))


def decode_task(task: Task, spec: Preprocessing, use_draft: bool, max_frames: int) -> Result:
    """``decode_image`` of a task: its bytes, or its file read confined under the root."""
    kind, name, payload = task
    source = functools.partial(read_confined, *payload) if kind == "path" else payload
    return decode_image(source, name, spec, use_draft=use_draft, max_frames=max_frames)


Decoder = Callable[[Task, Preprocessing, bool, int], Result]


class Decoders:
    """Long-lived decode processes shared by all requests; a stuck or crashed one is replaced.

    ``workers=0`` decodes in the calling thread: no isolation, and the deadline is checked
    only before an image starts (for tests and tiny setups).
    """

    def __init__(
        self,
        spec: Preprocessing,
        *,
        workers: int,
        use_draft: bool,
        max_frames: int,
        decoder: Decoder = decode_task,
    ) -> None:
        self.spec, self.workers, self.decoder = spec, workers, decoder
        self.use_draft, self.max_frames = use_draft, max_frames
        self.restarts = 0
        self._ctx = mp.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._started = self._closed = False
        self._lock = threading.Lock()

    def _spawn(self) -> _Worker:
        """A new worker, sent an empty warm-up task that it answers once its imports are done."""
        w = _Worker(self._ctx, self)
        with contextlib.suppress(OSError):
            w.conn.send(("bytes", "warm-up", b""))
        return w

    def _settle(self, w: _Worker) -> _Worker:
        with contextlib.suppress(EOFError, OSError):
            if w.conn.poll(60):
                w.conn.recv()
        return w

    def _replace(self) -> None:  # in its own thread: no request waits on a new worker's imports
        w = self._settle(self._spawn())
        if self._closed:
            w.stop()
        else:
            self._idle.put(w)

    def start(self) -> None:
        with self._lock:
            if not self._started:
                for w in [self._spawn() for _ in range(self.workers)]:  # importing side by side
                    self._idle.put(self._settle(w))
                self._started = True

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return

    def decode(self, task: Task, deadline: float) -> Result:
        """Blocking: decode one task, waiting for a free worker no later than ``deadline``."""
        late = Failed(task[1], ImageError("timeout", "decoding ran past the request's time limit"))
        if time.monotonic() >= deadline:
            return late
        if self.workers <= 0:
            return self.decoder(task, self.spec, self.use_draft, self.max_frames)
        self.start()  # normally done by the app's startup
        try:
            w = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return late
        healthy = False
        try:
            w.conn.send(task)
            if w.conn.poll(max(0.0, deadline - time.monotonic())):
                result, healthy = w.conn.recv(), True
                return result
            failed = late
        except (EOFError, OSError):
            w.proc.join(1)
            reason = f"the decoder process died (exit code {w.proc.exitcode})"
            failed = Failed(task[1], ImageError("crash", reason))
        finally:
            if healthy:
                self._idle.put(w)
            else:  # stuck, dead or interrupted mid-task: a fresh process takes its place
                w.stop(kill=True)
                self.restarts += 1
                threading.Thread(target=self._replace, daemon=True).start()
        return failed
