"""`kaq serve` on the wire: raw sockets against a real server with two workers.

What is tested here happens below the app (in the socket, the HTTP parser or
uvicorn's supervisor), so only a real server and a raw client can show it.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import struct
import threading
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


def metric_lines(server: Server, name: str) -> dict[str, float]:
    """The samples of one metric, by label text."""
    import httpx

    text = httpx.get(server.url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name) :].rpartition(" ")
            out[labels] = float(value)
    return out


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {what}"
            return value
        time.sleep(0.1)


def test_clients_leaving_mid_body_are_counted_as_499_without_a_traceback(server: Server) -> None:
    # regression: 50 such clients gave 50 'unhandled error' tracebacks and 50 status 500
    def closed(labels: str) -> float:
        return metric_lines(server, "kaq_http_requests_total").get(labels, 0)

    key = '{method="POST",route="/v1/evaluate",status="499"}'
    before = closed(key)
    socks = []
    for _ in range(50):
        sock = connect(server)
        sock.sendall(
            b"POST /v1/evaluate HTTP/1.1\r\nHost: kaq\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"account_id": "gone"'
        )
        socks.append(sock)
    time.sleep(0.2)  # every request is inside the app, waiting for the rest of its body
    for sock in socks:
        sock.close()
    wait_for(lambda: closed(key) - before >= 50, what="50 requests counted as 499")
    counts = metric_lines(server, "kaq_http_requests_total")
    assert not [k for k in counts if 'status="500"' in k], counts
    text = Path(server.log).read_text()
    assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]


def logged_rows(server: Server) -> int:
    with sqlite3.connect(server.db_url.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


def settled(read, quiet: float = 1.0, timeout: float = 15.0) -> int:
    """`read()` once it has not changed for `quiet` seconds."""
    value, since = read(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return value


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a client that crashes or gives up does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_ndjson_stream_stops_within_one_chunk_of_a_reset(server: Server) -> None:
    # regression: 3,000 lines sent, 303 verdicts read, reset: 1,024 more rows were logged after
    chunk = 256  # log_chunk_size's default: the stream evaluates and logs this many at once
    lines = b"".join(
        json.dumps({"account_id": f"R-{i}", "annual_spend": i, "product_fit": "strong"}).encode()
        + b"\n"
        for i in range(3000)
    )
    sock = connect(server)
    head = (
        b"POST /v1/evaluate/batch HTTP/1.1\r\nHost: kaq\r\n"
        b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(lines), lines)
    sender = threading.Thread(target=lambda: sock.sendall(head + body), daemon=True)
    sender.start()
    got = b""
    while got.count(b'"decision_id"') < 303:
        data = sock.recv(65536)
        assert data, got[-500:]
        got += data
    at_reset = logged_rows(server)
    reset(sock)
    after = settled(lambda: logged_rows(server)) - at_reset
    print(f"\nrows logged after the reset: {after} (one chunk: {chunk})")
    assert after <= chunk
    key = '{method="POST",route="/v1/evaluate/batch",status="499"}'
    assert wait_for(lambda: metric_lines(server, "kaq_http_requests_total").get(key))


def test_no_server_error_was_logged(server: Server) -> None:
    """Last in this module: nothing above left a traceback in the server's log."""
    text = Path(server.log).read_text()
    assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]
