"""`kaq serve` on the wire: raw sockets against a real server with two workers.

What is tested here happens below the app (in the socket, the HTTP parser or
uvicorn's supervisor), so only a real server and a raw client can show it.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("server"), workers=2, tiny=True)
    s.wait_for_workers(2)
    yield s
    stop_server(s)


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response framed by Content-Length: status, headers, body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: kaq\r\n\r\n".encode()


def test_keep_alive_requests_are_answered_without_a_nagle_stall(server: Server) -> None:
    # regression: with --workers 2 every keep-alive answer waited ~44 ms for a delayed ACK
    medians = {}
    with connect(server) as sock:
        for path in ("/healthz", "/v1/rulesets"):
            times = []
            for _ in range(50):
                started = time.perf_counter()
                sock.sendall(get(path))
                status, _, _ = read_response(sock)
                times.append(time.perf_counter() - started)
                assert status == 200
            medians[path] = statistics.median(times) * 1000
    print(f"\nkeep-alive median with 2 workers: {medians}")
    assert all(ms < 20 for ms in medians.values()), medians


def test_no_server_error_was_logged(server: Server) -> None:
    text = Path(server.log).read_text()
    assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]
