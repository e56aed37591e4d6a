"""kaq under uvicorn: the HTTP/1.1 protocol and the server settings `kaq serve` runs with.

uvicorn's h11 protocol, with what kaq needs on top of it:

- **TCP_NODELAY on every accepted connection.** asyncio sets it only on sockets
  created with ``proto=IPPROTO_TCP``; uvicorn's multi-worker listening socket
  is created with ``proto=0``, so with ``--workers 2`` Nagle's algorithm held
  each small response until the client's delayed ACK: ~44 ms per keep-alive
  request instead of ~1 ms.

- **Whether the client is still there**, for the app to ask between chunks of
  a stream without reading more of the body (`api/client.py`): the request's
  scope carries a `Connection` that asks the socket itself, so a reset is seen
  even while reading is paused and nothing has been written since.

The h11 protocol is chosen explicitly (uvicorn's "auto" would pick httptools
when installed): these additions are written, and tested, against it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from .client import EXTENSION


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (no Nagle) on a TCP transport; anything else is left as is."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the connection is already gone: nothing to tune
            pass


def _peer_closed(sock: Any) -> bool:
    """True when the kernel says the peer has reset or closed (half-closed) the connection."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state != _TCP_ESTABLISHED


_TCP_ESTABLISHED = 1  # tcpi_state, the first byte of Linux's struct tcp_info


class _Connection:
    """One request's connection as `api.client.Connection` describes it."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle):
        self._transport = transport
        self._cycle = cycle

    def gone(self) -> bool:
        if self._cycle.disconnected:
            return True
        if not self._transport.is_closing() and not _peer_closed(
            self._transport.get_extra_info("socket")
        ):
            return False
        # Known here before uvicorn's own read or write fails: tell it too, so that
        # the app ending its response early is taken as the disconnect it is.
        self._cycle.disconnected = True
        self._transport.close()
        return True


class KaqH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the additions listed in the module docstring."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_nodelay(transport)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self.cycle is not None:
            # A new request: its task is created but has not run yet.
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope.setdefault("extensions", {})[EXTENSION] = _Connection(self.transport, self.cycle)


def run(*, host: str, port: int, workers: int, log_level: str, log_config: dict[str, Any]) -> None:
    """Serve `api.app:app` until stopped (a supervisor and `workers` processes when > 1)."""
    import uvicorn

    uvicorn.run(
        "api.app:app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=log_config,
        http=KaqH11Protocol,
        timeout_graceful_shutdown=30,
        server_header=False,
    )
