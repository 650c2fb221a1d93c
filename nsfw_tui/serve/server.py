"""Running the REST face: binding checks, the uvicorn server and `run`."""

# fastapi, starlette, anyio and uvicorn are imported inside functions: spawned decode workers
# import this package for `decode_task`, and the base install has none of them.

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import NsfwTuiError
from ..core.scorers import Scorer
from .app import LOOPBACK_HOSTS, _host_name, create_app
from .connections import guarded_h11
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


def make_server(
    app,
    host: str,
    port: int,
    *,
    max_per_peer: int = 64,
    max_connections: int = 1024,
    timeout_keep_alive: int = 5,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 30.0,
    log_level: str = "info",
    access_log: bool = True,
):
    """A uvicorn server for ``app``; ``server.run(sockets=[...])`` serves on given sockets.

    Overload is the app's to answer (503 for /invocations work in flight, see create_app);
    uvicorn's own limit counts every open socket, authenticated or not, and answers 503 to
    every path, so it stays far above the cap per peer, a last guard for file descriptors.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_h11(header_timeout_s, body_timeout_s, max_per_peer),
        lifespan="on",
        limit_concurrency=max_connections,
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
    max_per_peer: int = 64,
    max_connections: int = 1024,
    timeout_keep_alive: int = 5,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 30.0,
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
        max_per_peer=max_per_peer,
        max_connections=max_connections,
        timeout_keep_alive=timeout_keep_alive,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        log_level=log_level,
    )
    if announce is not None:
        announce()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C once it has stopped
        server.run(sockets=[sock])
    if not server.started:
        raise NsfwTuiError(f"could not serve on {host}:{port} (see the log above)")
