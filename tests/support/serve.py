"""Helpers for the REST tests: a fake scorer, live servers (a thread or a process), raw sockets."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
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


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    url: str
    port: int
    proc: subprocess.Popen


@contextlib.contextmanager
def serve_process(home: Path, *args: str, token: str | None = None) -> Iterator[Process]:
    """The real `nsfw-tui serve` in its own process, with the tests' fake scorer."""
    port = free_port()
    children = Path(__file__).with_name("stress_children.py")
    cmd = [sys.executable, str(children), "cli", "serve", "--home", str(home), "--port", str(port)]
    cmd += [*args, *(["--token", token] if token else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not answer /health within 60 s")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", headers=auth, timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield Process(url, port, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SlowHeaders:
    """Slowloris: ``n`` connections from ``source`` that send a request's headers one byte
    per ``interval_s`` and never finish them; each one the server closes is opened again."""

    HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    def __init__(self, port: int, n: int, source: str = "127.0.0.2", interval_s: float = 0.2):
        self.port, self.n, self.source, self.interval_s = port, n, source, interval_s
        self.opened = self.closed_by_server = 0
        self._socks: list[socket.socket | None] = [None] * n
        self._sent = [0] * n
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowHeaders:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self._socks:
            if s is not None:
                s.close()

    def open_now(self) -> int:
        """How many of the connections are open at this moment."""
        return sum(s is not None for s in self._socks)

    def _connect(self) -> socket.socket | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.bind((self.source, 0))
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        self.opened += 1
        return s

    def _closed(self, s: socket.socket) -> bool:
        if not select.select([s], [], [], 0)[0]:
            return False
        try:
            return s.recv(4096) == b""  # the server never answers these, only closes them
        except OSError:
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, s in enumerate(self._socks):
                if s is not None and self._closed(s):
                    s.close()
                    self.closed_by_server += 1
                    s = self._socks[i] = None
                if s is None:
                    s = self._socks[i] = self._connect()
                    self._sent[i] = 0
                    if s is None:
                        continue
                head, k = self.HEAD, self._sent[i]
                try:
                    s.send(head[k : k + 1] if k < len(head) else b"a")
                    self._sent[i] = k + 1
                except OSError:
                    s.close()
                    self.closed_by_server += 1
                    self._socks[i] = None
            self._stop.wait(self.interval_s)
