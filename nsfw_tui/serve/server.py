"""Running the REST face: binding checks, the uvicorn server and `run`."""

# fastapi, starlette, anyio and uvicorn are imported inside functions: spawned decode workers
# import this package for `decode_task`, and the base install has none of them.

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import NsfwTuiError
from ..core.scorers import Scorer
from .app import LOOPBACK_HOSTS, _host_name, create_app
from .paths import _oserror_text

EXTRAS_HINT = "the REST endpoint needs extra packages: pip install 'nsfw-tui[serve]'"


def require_extras() -> None:
    """One clear line when the `serve` extra is not installed."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "python_multipart")):
        raise NsfwTuiError(EXTRAS_HINT)


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_binding(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (then every request must carry it)."""
    if not is_loopback(host) and not token:
        raise NsfwTuiError(
            f"refusing to serve on {host} without a token: pass --token T (clients then send "
            "'Authorization: Bearer T'), or bind to 127.0.0.1"
        )


def _header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol, closing connections whose request headers take too long.

    uvicorn times out idle keep-alive connections only; a client that sends half its
    headers would otherwise hold its connection (and a `limit_concurrency` slot) forever.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def connection_lost(self, exc) -> None:
            self._stop_watch()
            super().connection_lost(exc)

        def _watch_headers(self) -> None:
            if self.conn.their_state is not h11.IDLE:
                self._stop_watch()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _stop_watch(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11


def make_server(
    app,
    host: str,
    port: int,
    *,
    limit_concurrency: int = 64,
    timeout_keep_alive: int = 5,
    header_timeout_s: float = 10.0,
    log_level: str = "info",
    access_log: bool = True,
):
    """A uvicorn server for ``app``; ``server.run(sockets=[...])`` serves on given sockets."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_header_timeout_protocol(header_timeout_s),
        lifespan="on",
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
        timeout_graceful_shutdown=5,
        h11_max_incomplete_event_size=16 * 1024,
        server_header=False,
        proxy_headers=False,
        log_level=log_level,
        access_log=access_log,
    )
    return uvicorn.Server(config)


def allowed_hosts_for(host: str, token: str | None, extra: Sequence[str] = ()) -> list[str] | None:
    """Host names to answer: loopback names, the bound host, and ``extra``.

    Bound to a wildcard address with a token and no ``extra``, any Host is answered: the
    Host check guards tokenless loopback servers against DNS rebinding; the token guards
    the rest.
    """
    if "*" in extra:
        return None
    wildcard = host in ("0.0.0.0", "::", "")
    if wildcard and token and not extra:
        return None
    return sorted(LOOPBACK_HOSTS | {_host_name(host)} | {_host_name(h) for h in extra})


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise NsfwTuiError(f"cannot listen on {host}:{port}: {_oserror_text(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise NsfwTuiError(f"cannot listen on {host}:{port}: {_oserror_text(exc)}") from None
    return sock


def run(
    host: str,
    port: int,
    *,
    scorer: Scorer,
    threshold: float,
    token: str | None = None,
    allow_hosts: Sequence[str] = (),
    limit_concurrency: int = 64,
    timeout_keep_alive: int = 5,
    header_timeout_s: float = 10.0,
    log_level: str = "info",
    announce: Callable[[], None] | None = None,
    **app_options: Any,
) -> None:
    """Serve until Ctrl+C. Refuses a non-loopback address without a token before binding."""
    check_binding(host, token)
    require_extras()
    sock = _bind(host, port)  # a busy port is one clear line, before any worker starts
    app = create_app(
        scorer,
        threshold=threshold,
        token=token,
        allowed_hosts=allowed_hosts_for(host, token, allow_hosts),
        **app_options,
    )
    server = make_server(
        app,
        host,
        port,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
        header_timeout_s=header_timeout_s,
        log_level=log_level,
    )
    if announce is not None:
        announce()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C once it has stopped
        server.run(sockets=[sock])
    if not server.started:
        raise NsfwTuiError(f"could not serve on {host}:{port} (see the log above)")
