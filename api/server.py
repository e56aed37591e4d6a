"""kaq under uvicorn: the HTTP/1.1 protocol and the server settings `kaq serve` runs with.

uvicorn's h11 protocol, with what kaq needs on top of it:

- **TCP_NODELAY on every accepted connection.** asyncio sets it only on sockets
  created with ``proto=IPPROTO_TCP``; uvicorn's multi-worker listening socket
  is created with ``proto=0``, so with ``--workers 2`` Nagle's algorithm held
  each small response until the client's delayed ACK: ~44 ms per keep-alive
  request instead of ~1 ms.

- **A bound on the time to send a request's headers**
  (`KAQ_HEADER_TIMEOUT_SECONDS`): uvicorn has none, so a client sending its
  headers a byte at a time (a slow-loris), or connecting and sending nothing,
  held its connection for as long as it liked. The clock starts when the
  connection opens or the previous response is complete and stops when the
  headers are in; then the connection is closed, with a 408 problem if a
  request had begun. (The body's pace is bounded by the app: `api/bodies.py`.)

- **A malformed request answered as problem+json** (bad `Content-Length`,
  broken framing or header syntax: h11 refuses it before the app sees it),
  instead of uvicorn's `text/plain` 400.

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
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .client import EXTENSION
from .errors import PROBLEM_MEDIA_TYPE, ApiError, MalformedRequest, RequestTimeout, dumps
from .settings import get_settings


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (no Nagle) on a TCP transport; anything else is left as is."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the connection is already gone: nothing to tune
            pass


_TCP_ESTABLISHED = 1  # tcpi_state, the first byte of Linux's struct tcp_info


def _peer_closed(sock: Any) -> bool:
    """True when the kernel says the peer has reset or closed (half-closed) the connection."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state != _TCP_ESTABLISHED


class _Connection:
    """One request's connection as `api.client.Connection` describes it."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any):
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


def _raw_problem(error: ApiError) -> bytes:
    """A complete HTTP/1.1 response carrying `error`'s problem, closing the connection."""
    body = dumps(error.to_problem())
    head = (
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
        f"content-type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _KaqProtocol:
    """What kaq adds to a uvicorn HTTP protocol (the module docstring's list), for both
    parsers: each subclass says when a request's headers are complete."""

    # set by the uvicorn protocol this is mixed into
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    scope: Any

    def _kaq_init(self) -> None:
        self.header_timeout = get_settings().header_timeout_seconds
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # received since the clock started
        self._headers_in = False  # the current request's headers are complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        set_nodelay(transport)
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            self._header_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]

    def _request_started(self, previous: Any) -> None:
        """After the parser made a cycle: a new request's headers are in, and its task is
        created (or queued behind a pipelined one) but has not run."""
        if self.cycle is previous or self.cycle is None:
            return
        self._headers_in = True
        self._stop_header_clock()
        self.scope.setdefault("extensions", {})[EXTENSION] = _Connection(self.transport, self.cycle)

    def on_response_complete(self) -> None:
        # Before uvicorn starts the next cycle: a pipelined request stops the clock again.
        self._headers_in = False
        self._start_header_clock()
        super().on_response_complete()  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        # The parser refused the request (framing, Content-Length, header syntax): kaq's app
        # never sees it, but its answer is still a problem, like every other error. If a
        # response is already on its way (a chunked body broke mid-stream), only closing is
        # left.
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()
            return
        self.transport.write(
            _raw_problem(
                MalformedRequest(
                    "The HTTP request is malformed (request line, headers, Content-Length or "
                    "chunked framing) and was refused before it reached kaq."
                )
            )
        )
        self.transport.close()

    def _start_header_clock(self) -> None:
        self._stop_header_clock()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_bytes and not self._headers_in:
            self.transport.write(
                _raw_problem(
                    RequestTimeout(
                        f"The request's headers did not arrive within {self.header_timeout:g} s."
                    )
                )
            )
        self.transport.close()


class KaqH11Protocol(_KaqProtocol, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol (pure Python) with kaq's additions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kaq_init()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        self._request_started(cycle)


class KaqHttpToolsProtocol(_KaqProtocol, HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol (llhttp, in C) with kaq's additions: the default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kaq_init()

    def on_headers_complete(self) -> None:
        cycle = self.cycle
        super().on_headers_complete()
        self._request_started(cycle)


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {
    "httptools": KaqHttpToolsProtocol,
    "h11": KaqH11Protocol,
}


def run(
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_config: dict[str, Any],
    http: str = "httptools",
    access_log: bool = False,
) -> None:
    """Serve `api.app:app` until stopped (a supervisor and `workers` processes when > 1).

    The event loop is uvloop when it is installed (uvicorn's "auto"), else asyncio's.
    """
    import uvicorn

    uvicorn.run(
        "api.app:app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=log_config,
        http=PROTOCOLS[http],
        loop="auto",
        access_log=access_log,
        timeout_graceful_shutdown=30,
        server_header=False,
    )
