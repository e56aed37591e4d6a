"""Whether the client of a request is still there, asked without reading its body.

ASGI tells an app that its client left only through `receive()`, and only once
the body received so far is used up: an NDJSON stream holding a thousand unread
lines would evaluate and log all of them for nobody. kaq's uvicorn protocol
(`api/server.py`) puts a `Connection` into `scope["extensions"]` that knows
from the socket itself; under any other server (the tests' ASGI transport)
nothing is known and the client counts as present until `receive()` says
otherwise.

A client that leaves is not an error of kaq's: it shows as Starlette's
`ClientDisconnect`, which the app answers with nothing, logs without a
traceback and counts as status 499 (nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.requests import ClientDisconnect
from starlette.types import Scope

EXTENSION = "kaq.connection"
CLIENT_CLOSED = 499


class Connection(Protocol):
    """The server's view of one request's connection."""

    def gone(self) -> bool:
        """True once the client has closed or reset the connection."""
        ...


def client_gone(scope: Scope) -> bool:
    """True when the server knows the client of this request has left."""
    connection = (scope.get("extensions") or {}).get(EXTENSION)
    return connection is not None and connection.gone()


async def ensure_client(scope: Scope) -> None:
    """A checkpoint between units of work: raise `ClientDisconnect` if the client left."""
    await asyncio.sleep(0)  # let the event loop take in a reset that has just arrived
    if client_gone(scope):
        raise ClientDisconnect()


__all__ = [
    "CLIENT_CLOSED",
    "EXTENSION",
    "ClientDisconnect",
    "Connection",
    "client_gone",
    "ensure_client",
]
