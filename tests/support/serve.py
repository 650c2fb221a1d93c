"""Helpers for the REST tests: a fake scorer, a live uvicorn server on loopback, raw sockets."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scorers import ScoreBatch
from nsfw_tui.serve import decode_task, make_server
from support.imagegen import photo


class FakeScorer:
    """P(nsfw) is how red the frame is; ``hold`` blocks every call until it is set."""

    id = "fake-redness"
    preprocessing = IMAGENET(32)
    default_threshold = 0.5

    def __init__(self, hold: threading.Event | None = None, delay_s: float = 0.0) -> None:
        self.hold = hold
        self.delay_s = delay_s
        self.entered = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        with self._lock:
            self.calls += 1
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(30), "the test never released the scorer"
        if self.delay_s:
            time.sleep(self.delay_s)
        px = pixels.astype(np.float32)
        red = px[..., 0].mean(axis=(1, 2)) - px[..., 1:].mean(axis=(1, 2, 3))
        return ScoreBatch(np.clip(red / 255.0 + 0.5, 0, 1))


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (96, 72)) -> bytes:
    buf = io.BytesIO()
    photo(size, seed).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Module-level so that spawned decode workers can import it.
def faulty_decoder(task, spec, use_draft: bool, max_frames: int):
    kind, _, payload = task
    if kind == "bytes" and payload.startswith(b"SLOW"):
        time.sleep(60)
    if kind == "bytes" and payload.startswith(b"CRASH"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return decode_task(task, spec, use_draft, max_frames)


@dataclass
class Live:
    url: str
    port: int
    server: object
    app: object


@contextlib.contextmanager
def live_server(app, **options) -> Iterator[Live]:
    """uvicorn on 127.0.0.1 and a free port, in a thread; stopped (bounded) at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options.setdefault("log_level", "warning")
    options.setdefault("access_log", False)
    server = make_server(app, "127.0.0.1", port, **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", port, server, app)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def raw_request(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_reply(s)


def read_reply(s: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := s.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
    return b"".join(chunks)


def _complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
