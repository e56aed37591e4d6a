"""kaq under uvicorn: the HTTP/1.1 protocol and the server settings `kaq serve` runs with.

uvicorn's h11 protocol, with what kaq needs on top of it:

- **TCP_NODELAY on every accepted connection.** asyncio sets it only on sockets
  created with ``proto=IPPROTO_TCP``; uvicorn's multi-worker listening socket
  is created with ``proto=0``, so with ``--workers 2`` Nagle's algorithm held
  each small response until the client's delayed ACK: ~44 ms per keep-alive
  request instead of ~1 ms.

The h11 protocol is chosen explicitly (uvicorn's "auto" would pick httptools
when installed): these additions are written, and tested, against it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (no Nagle) on a TCP transport; anything else is left as is."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the connection is already gone: nothing to tune
            pass


class KaqH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the additions listed in the module docstring."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_nodelay(transport)


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
