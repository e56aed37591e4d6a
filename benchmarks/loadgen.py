"""The load generator of `make bench`: its own process, raw HTTP/1.1 on loopback, JSON out.

    python benchmarks/loadgen.py open   --port P --bodies FILE --rate 500 --seconds 20
    python benchmarks/loadgen.py closed --port P --bodies FILE --conns 16 --seconds 20
    python benchmarks/loadgen.py ndjson --port P --file accounts.jsonl --view decision

`open` is an open-loop generator: request i is due at start + i / rate whatever happened to
the ones before it, and its latency is counted from that due time, so a server that falls
behind is charged for the queue it causes (no coordinated omission). Requests go out on
keep-alive connections taken from a pool that grows as needed (up to --max-conns).
`closed` keeps --conns connections busy back to back: the saturation rate. `ndjson` streams
a JSON Lines file to `POST /v1/evaluate/batch` (chunked) while it reads the streamed answer,
and counts the verdict lines and the error lines.

Bodies are the lines of --bodies, sent as they are; each response's status and length are
checked. Prints one JSON object: counts, latency percentiles (ms), achieved rate, and this
process's CPU time and peak RSS. Every wait is bounded (--timeout per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def percentiles(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    lat = sorted(lat)

    def at(q: float) -> float:
        return lat[min(len(lat) - 1, max(0, int(round(q * len(lat))) - 1))] * 1e3

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": lat[-1] * 1e3}


def own_usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"client_cpu_s": ru.ru_utime + ru.ru_stime, "client_peak_rss_kb": ru.ru_maxrss}


def request_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# uvicorn closes a keep-alive connection idle for 5 s; one idle longer than this is not reused
# (a request written into a connection the server is closing fails, through no fault of its)
IDLE_REUSE_S = 2.0


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.last_used = time.perf_counter()

    def stale(self) -> bool:
        return self.reader.at_eof() or time.perf_counter() - self.last_used > IDLE_REUSE_S

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bool]:
        """(status, body looks like a verdict); raises on a broken connection."""
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = None, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        if length is None:
            raise ConnectionError("response without content-length")
        body = await self.reader.readexactly(length)
        self.last_used = time.perf_counter()
        if close:
            raise ConnectionResetError("server closed the connection")
        return status, body[:1] == b"{" and body[-1:] == b"}"

    def close(self) -> None:
        self.writer.close()


class Tally:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.ok = self.bad_status = self.errors = 0
        self.last_done = 0.0

    def done(self, status: int, good: bool, took: float, now: float) -> None:
        if status == 200 and good:
            self.ok += 1
            self.lat.append(took)
        else:
            self.bad_status += 1
        self.last_done = now


async def open_loop(args: argparse.Namespace, reqs: list[bytes]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    idle: list[Conn] = []
    waiters: deque[asyncio.Future[Conn]] = deque()
    opened = 0
    tally = Tally()
    n = int(args.rate * args.seconds)
    behind = 0

    async def acquire() -> Conn:
        nonlocal opened
        while idle:
            conn = idle.pop()
            if not conn.stale():
                return conn
            conn.close()
            opened -= 1
        if opened < args.max_conns:
            opened += 1
            return await Conn.open(args.port)
        fut: asyncio.Future[Conn] = loop.create_future()
        waiters.append(fut)
        return await fut

    def release(conn: Conn) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        idle.append(conn)

    async def one(i: int, due: float) -> None:
        conn = await acquire()
        try:
            status, good = await asyncio.wait_for(conn.request(reqs[i % len(reqs)]), args.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors += 1
            conn.close()
            conn = await Conn.open(args.port)  # keep the pool its size
        else:
            now = clock()
            tally.done(status, good, now - due, now)
        release(conn)

    tasks = []
    t0 = clock() + 0.05
    for i in range(n):
        due = t0 + i / args.rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            behind += 1  # the generator itself could not keep the schedule
        tasks.append(asyncio.ensure_future(one(i, due)))
    sent_by = clock()
    _, pending = await asyncio.wait(tasks, timeout=args.timeout + 5) if tasks else ((), ())
    for t in pending:
        t.cancel()
    for c in idle:
        c.close()
    span = max(tally.last_done - t0, 1e-9)
    return {
        "mode": "open",
        "offered_rps": args.rate,
        "seconds": args.seconds,
        "sent": n,
        "ok": tally.ok,
        "bad_status": tally.bad_status,
        "errors": tally.errors + len(pending),
        "achieved_rps": tally.ok / span,
        "send_span_s": sent_by - t0,
        "late_sends": behind,
        "connections": opened,
        **percentiles(tally.lat),
        **own_usage(),
    }


async def closed_loop(args: argparse.Namespace, reqs: list[bytes]) -> dict[str, Any]:
    clock = time.perf_counter
    tally = Tally()
    t0 = clock()
    stop = t0 + args.seconds

    async def worker(k: int) -> None:
        conn = await Conn.open(args.port)
        i = k
        while clock() < stop:
            started = clock()
            try:
                status, good = await asyncio.wait_for(
                    conn.request(reqs[i % len(reqs)]), args.timeout
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                tally.errors += 1
                conn.close()
                conn = await Conn.open(args.port)
            else:
                now = clock()
                tally.done(status, good, now - started, now)
            i += args.conns
        conn.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(k) for k in range(args.conns))), args.seconds + args.timeout + 5
    )
    span = max(clock() - t0, 1e-9)
    return {
        "mode": "closed",
        "connections": args.conns,
        "seconds": args.seconds,
        "ok": tally.ok,
        "bad_status": tally.bad_status,
        "errors": tally.errors,
        "achieved_rps": tally.ok / span,
        **percentiles(tally.lat),
        **own_usage(),
    }


async def ndjson(args: argparse.Namespace) -> dict[str, Any]:
    """Stream a file to the batch endpoint while reading the streamed verdicts."""
    marker = b'\n{"decision_id"'
    conn = await Conn.open(args.port)
    r, w = conn.reader, conn.writer
    path = f"/v1/evaluate/batch?view={args.view}"
    w.write(
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-ndjson\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    t0 = time.perf_counter()
    sent_bytes = 0

    async def send() -> None:
        nonlocal sent_bytes
        with open(args.file, "rb") as f:
            while block := f.read(256 * 1024):
                w.write(b"%x\r\n" % len(block) + block + b"\r\n")
                sent_bytes += len(block)
                await w.drain()
        w.write(b"0\r\n\r\n")
        await w.drain()

    async def receive() -> dict[str, Any]:
        head = await r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        lines = verdicts = 0
        received = 0
        tail = b"\n"
        first_at = None
        if not chunked:
            raise SystemExit(f"answer not streamed (status {status}): {head[:300]!r}")
        while True:
            size = int((await r.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await r.readuntil(b"\r\n")
                break
            data = (await r.readexactly(size + 2))[:-2]
            if first_at is None:
                first_at = time.perf_counter() - t0
            received += size
            lines += data.count(b"\n")
            buf = tail + data
            verdicts += buf.count(marker)
            tail = buf[-(len(marker) - 1) :]
        return {
            "status": status,
            "lines": lines,
            "verdicts": verdicts,
            "received_bytes": received,
            "first_line_s": first_at or 0.0,
        }

    sender = asyncio.ensure_future(send())
    got = await asyncio.wait_for(receive(), args.timeout)
    await asyncio.wait_for(sender, 5)
    wall = time.perf_counter() - t0
    conn.close()
    return {
        "mode": "ndjson",
        "view": args.view,
        "sent_bytes": sent_bytes,
        **got,
        "errors": got["lines"] - got["verdicts"],
        "wall_s": wall,
        "accounts_per_s": got["verdicts"] / wall,
        **own_usage(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("open", "closed", "ndjson"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/evaluate")
    ap.add_argument("--bodies", help="JSON Lines: one request body a line (open, closed)")
    ap.add_argument("--file", help="JSON Lines to stream (ndjson)")
    ap.add_argument("--view", default="full")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--max-conns", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request (whole stream)")
    args = ap.parse_args()
    reqs = []
    if args.mode != "ndjson":
        lines = Path(args.bodies).read_bytes().splitlines()
        reqs = [request_bytes(args.path, line) for line in lines if line.strip()]
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency of kaq serve
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if args.mode == "open":
            out = runner.run(open_loop(args, reqs))
        elif args.mode == "closed":
            out = runner.run(closed_loop(args, reqs))
        else:
            out = runner.run(ndjson(args))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
