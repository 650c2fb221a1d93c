"""Connection limits under uvicorn: header and body deadlines, and a cap per peer address."""

# uvicorn and h11 are imported inside functions: spawned decode workers import this package
# for `decode_task`, and the base install has neither.

from __future__ import annotations

import asyncio
import ipaddress
import logging

logger = logging.getLogger("uvicorn.error")


def peer_key(host: str | None) -> str:
    """Who a connection counts against: its IPv4 address, or its IPv6 /64 network.

    One IPv6 host usually holds a whole /64, so counting single addresses there would
    give one client millions of caps.
    """
    if not host:
        return ""  # a Unix socket or an unknown peer: all such connections count together
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class PeerConnections:
    """Open connections per peer, shared by every connection of one server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}
        self._warned: set[str] = set()

    def enter(self, key: str) -> bool:
        n = self.open.get(key, 0)
        if n >= self.limit:
            if key not in self._warned:  # once per spell at the cap, not once per connection
                self._warned.add(key)
                logger.warning("%s holds %d connections, the cap per client: closing more", key, n)
            return False
        self.open[key] = n + 1
        return True

    def leave(self, key: str) -> None:
        n = self.open.get(key, 0) - 1
        if n > 0:
            self.open[key] = n
        else:
            self.open.pop(key, None)
        if n < self.limit:
            self._warned.discard(key)


def guarded_h11(header_timeout_s: float, body_timeout_s: float, max_per_peer: int):
    """uvicorn's h11 protocol with the limits uvicorn lacks.

    uvicorn times out idle keep-alive connections only, and its `limit_concurrency` counts
    every open socket before anyone is authenticated: a client that sends its headers (or
    its body) slowly would hold a connection forever, and enough of them would get every
    other client a 503. Here each request's headers must arrive within `header_timeout_s`
    and its body within `body_timeout_s` of the headers, else the connection is closed; and
    one peer (see `peer_key`) may hold at most `max_per_peer` connections: more are closed
    as soon as they are accepted, so slow clients starve only themselves.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        _peer: str | None = None
        _timer: asyncio.TimerHandle | None = None
        _timed_state: type | None = None  # the h11 state the timer is watching

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            peers = getattr(self.server_state, "peer_connections", None)
            if peers is None:
                peers = self.server_state.peer_connections = PeerConnections(max_per_peer)
            key = peer_key(self.client[0] if self.client else None)
            if not peers.enter(key):
                transport.close()
                return
            self._peer = key
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc) -> None:
            self._stop_timer()
            if self._peer is not None:
                self.server_state.peer_connections.leave(self._peer)
                self._peer = None
            super().connection_lost(exc)

        def _watch(self) -> None:
            """One deadline per phase: the headers' from the connection opening (or, kept
            alive, from the next request's first byte), then the body's from the headers."""
            state = self.conn.their_state
            if state is h11.IDLE and self.timeout_keep_alive_task is not None:
                state = None  # between requests: uvicorn's keep-alive timeout applies
            if state is self._timed_state:
                return
            self._stop_timer()
            seconds = {h11.IDLE: header_timeout_s, h11.SEND_BODY: body_timeout_s}.get(state)
            if seconds is not None:
                self._timed_state = state
                self._timer = self.loop.call_later(seconds, self._late, state)

        def _stop_timer(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._timed_state = None

        def _late(self, state) -> None:
            self._timer = self._timed_state = None
            if self.conn.their_state is state and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11
