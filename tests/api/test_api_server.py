"""`kaq serve` on the wire: raw sockets against a real server with two workers.

What is tested here happens below the app (in the socket, the HTTP parser or
uvicorn's supervisor), so only a real server and a raw client can show it.
"""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Server, start_server, stop_server

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

# Short, so that the slow-client tests take seconds; the defaults are 10 s.
HEADER_TIMEOUT = BODY_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "KAQ_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "KAQ_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    }
    s = start_server(tmp_path_factory.mktemp("server"), workers=2, tiny=True, env=env)
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
    with closing(sqlite3.connect(server.db_url.removeprefix("sqlite:///"))) as conn:
        return conn.execute("SELECT COUNT(*) FROM log").fetchone()[0]


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


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: abc\r\n\r\n{}",
        b"Content-Length: -1\r\n\r\n{}",
        b"Content-Length: 1, 2\r\n\r\n{}",
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"Transfer-Encoding: gzip\r\n\r\n{}",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"Bad Header Line\r\n\r\n{}",
    ],
)
def test_a_request_the_http_parser_refuses_gets_a_problem_not_text(
    server: Server, framing: bytes
) -> None:
    # regression: uvicorn answered these with its own text/plain 400
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/evaluate HTTP/1.1\r\nHost: kaq\r\nContent-Type: application/json\r\n"
            + framing
        )
        answer = read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["type"] == "urn:kaq:problem:malformed-request" and problem["status"] == 400


def test_an_ndjson_stream_whose_framing_breaks_midway_is_closed_quietly(server: Server) -> None:
    line = b'{"account_id": "F-1", "annual_spend": 1}\n'
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/evaluate/batch HTTP/1.1\r\nHost: kaq\r\n"
            b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n" % (len(line), line)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ")  # the stream has started answering
        sock.sendall(b"zz\r\n")  # not a chunk size
        read_until_closed(sock)  # closed: a problem cannot be sent inside a stream


@dataclass
class Held:
    """What a slow client saw: how long until the server closed, and what it answered."""

    seconds: float
    answer: bytes

    @property
    def status(self) -> int | None:
        return int(self.answer.split()[1]) if self.answer.startswith(b"HTTP/1.1 ") else None


def slow_client(server: Server, first: bytes, trickle: bytes, every: float = 0.25) -> Held:
    """Send `first`, then `trickle` a byte every `every` s, until the server closes (max 30 s)."""
    sock = connect(server)
    started = time.monotonic()
    answer = b""
    try:
        sock.sendall(first)
        left = trickle
        while time.monotonic() - started < 30:
            if left:
                sock.sendall(left[:1])
                left = left[1:]
            readable, _, _ = select.select([sock], [], [], every)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    except OSError:  # reset by the server: cut off just the same
        pass
    finally:
        sock.close()
    return Held(time.monotonic() - started, answer)


@pytest.mark.once
def test_slow_clients_are_cut_off_and_normal_traffic_is_not_held(server: Server) -> None:
    # regression: 100 slow connections were each held for the full 30 s
    request = (
        b"POST /v1/evaluate HTTP/1.1\r\nHost: kaq\r\nContent-Type: application/json\r\n"
        b"Content-Length: 60\r\n\r\n"
    )
    body = b'{"account_id": "slow", "annual_spend": 1, "product_fit": "strong"}'[:60]
    kinds = {
        "headers a byte at a time": (b"", request),
        "body a byte at a time": (request, body),
        "connected, sending nothing": (b"", b""),
    }
    with ThreadPoolExecutor(60) as pool:
        futures = {
            kind: [pool.submit(slow_client, server, *parts) for _ in range(20)]
            for kind, parts in kinds.items()
        }
        time.sleep(0.5)
        normal = []
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(20):
                started = time.monotonic()
                r = c.post("/v1/evaluate", json={"account_id": f"N-{i}", "annual_spend": i})
                normal.append(time.monotonic() - started)
                assert r.status_code == 200
        held = {kind: [f.result() for f in fs] for kind, fs in futures.items()}
    for kind, clients in held.items():
        longest = max(c.seconds for c in clients)
        statuses = sorted({str(c.status) for c in clients})
        print(f"\n{kind}: cut off after {longest:.1f} s at most; statuses {statuses}")
        # the bound is 3 s; without one, these clients would hold on for 15-30 s
        assert longest < HEADER_TIMEOUT + 5, kind
    assert {c.status for c in held["headers a byte at a time"]} == {408}
    assert {c.status for c in held["body a byte at a time"]} == {408}
    assert {c.status for c in held["connected, sending nothing"]} == {None}
    for c in held["headers a byte at a time"] + held["body a byte at a time"]:
        assert b"application/problem+json" in c.answer and b"request-timeout" in c.answer
    print(f"normal requests meanwhile: slowest {max(normal) * 1000:.0f} ms")
    assert max(normal) < 2


@pytest.mark.once
def test_a_long_body_at_a_steady_pace_is_not_cut_off(server: Server) -> None:
    # 9,000 bytes over ~4.5 s: longer than the 3 s grace, well above 500 bytes a second
    lines = [
        json.dumps({"account_id": f"P-{i:04}", "annual_spend": i, "product_fit": "strong"})
        for i in range(150)
    ]
    payload = ("\n".join(lines) + "\n").encode()
    sock = connect(server)
    sock.sendall(
        b"POST /v1/evaluate/batch HTTP/1.1\r\nHost: kaq\r\n"
        b"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n" % len(payload)
    )
    started = time.monotonic()
    for i in range(0, len(payload), 200):
        sock.sendall(payload[i : i + 200])
        time.sleep(0.1)
    sent_in = time.monotonic() - started
    answer = b""
    while answer.count(b"\n") < 150 + 1 or not answer.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        assert data, answer[-300:]
        answer += data
    sock.close()
    assert sent_in > BODY_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b'"decision_id"') == 150


def test_no_server_error_was_logged(server: Server) -> None:
    """Last in this module: nothing above left a traceback in the server's log."""
    text = Path(server.log).read_text()
    assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]
