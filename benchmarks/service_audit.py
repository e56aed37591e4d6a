"""Issue #9's service findings, reproduced against a real `kaq serve` (the tiny test ruleset).

    .venv/bin/python benchmarks/service_audit.py latency [--workers 2] [-n 200]
    .venv/bin/python benchmarks/service_audit.py ndjson-reset     # rows logged after a reset
    .venv/bin/python benchmarks/service_audit.py slow-clients     # clients closing mid-body
    .venv/bin/python benchmarks/service_audit.py slowloris        # 100 byte-a-second clients
    .venv/bin/python benchmarks/service_audit.py password         # what is printed of a URL
    .venv/bin/python benchmarks/service_audit.py readyz-sqlite [--no-shm]   # chattr +i: root
    .venv/bin/python benchmarks/service_audit.py readyz-postgres  # schema dropped, recreated
    .venv/bin/python benchmarks/service_audit.py host-redirect
    .venv/bin/python benchmarks/service_audit.py bad-length
    .venv/bin/python benchmarks/service_audit.py pg-unreachable [-v]

Each prints one figure or what was answered. PostgreSQL at KAQ_TEST_PG_URL (default
postgresql://postgres@127.0.0.1:5432/test). To measure another checkout, run it with
KAQ_REPO=<that checkout> and PYTHONPATH=<that checkout> (the kaq of this venv then
imports that code).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx

REPO = Path(os.environ.get("KAQ_REPO", Path(__file__).resolve().parents[1]))
KAQ = str(Path(sys.executable).parent / "kaq")
PG = os.environ.get("KAQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, tmp: Path, workers: int = 1, db: str | None = None, env=None, tiny=True):
        self.tmp = tmp
        rs = tmp / "rulesets"
        if not rs.exists():
            rs.mkdir()
            src = REPO / ("tests/api/fixtures/tiny" if tiny else "rulesets")
            for f in src.glob("*.yaml"):
                shutil.copy(f, rs / f.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db or f"sqlite:///{tmp / 'kaq.db'}"
        self.log = tmp / f"serve-{self.port}.log"
        e = {**os.environ, **(env or {})}
        if tiny:
            e["KAQ_DEFAULT_RULESET"] = "tiny"
        e["KAQ_DB_URL"] = self.db
        cmd = [KAQ, "serve", "--port", str(self.port), "--rulesets", str(rs)]
        cmd += ["--workers", str(workers)]
        self.out = self.log.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=tmp, env=e, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"kaq serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    time.sleep(1.0 if workers > 1 else 0)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("not ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.out.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def raw_get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: kaq\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


def latency(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d), workers=args.workers)
        try:
            for path in ("/healthz", "/readyz"):
                with socket.create_connection(("127.0.0.1", s.port)) as sock:
                    times = []
                    for _ in range(args.n):
                        t = time.perf_counter()
                        raw_get(sock, path)
                        times.append((time.perf_counter() - t) * 1e3)
                print(
                    f"workers={args.workers} {path}: {args.n} keep-alive GETs, "
                    f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms"
                )
        finally:
            s.stop()


def _rows(db: str) -> int:
    with closing(sqlite3.connect(db[len("sqlite:///") :])) as conn:
        return conn.execute("SELECT COUNT(*) FROM log").fetchone()[0]


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def ndjson_reset(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d))
        try:
            lines = b"".join(
                json.dumps(
                    {"account_id": f"N-{i}", "annual_spend": i, "product_fit": "strong"}
                ).encode()
                + b"\n"
                for i in range(3000)
            )
            sock = socket.create_connection(("127.0.0.1", s.port))
            head = (
                b"POST /v1/evaluate/batch HTTP/1.1\r\nHost: kaq\r\n"
                b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            body = f"{len(lines):x}\r\n".encode() + lines + b"\r\n0\r\n\r\n"
            sender = threading.Thread(target=lambda: sock.sendall(head + body), daemon=True)
            sender.start()
            got = b""
            while got.count(b'"decision_id"') < 303:
                got += sock.recv(4096)
            before = _rows(s.db)
            _rst(sock)
            time.sleep(3)
            after = _rows(s.db)
            text = s.text()
            print(
                f"read 303 verdicts, reset: rows at reset {before}, 3 s later {after}: "
                f"{after - before} logged after the reset; "
                f"tracebacks in the log: {text.count('Traceback')}"
            )
        finally:
            s.stop()


def _metric_500(url: str) -> str:
    text = httpx.get(url + "/metrics").text
    return "\n".join(x for x in text.splitlines() if x.startswith("kaq_http_requests_total"))


def slow_clients(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d))
        try:
            socks = []
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", s.port))
                sock.sendall(
                    b"POST /v1/evaluate HTTP/1.1\r\nHost: kaq\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                    b'{"account_id": "x"'
                )
                socks.append(sock)
            time.sleep(0.5)
            for sock in socks:
                sock.close()
            time.sleep(1)
            text = s.text()
            print(
                f"50 clients closing mid-body: 'unhandled error' x{text.count('unhandled error')},"
                f" Traceback x{text.count('Traceback')}\n{_metric_500(s.url)}"
            )
        finally:
            s.stop()


def slowloris(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d))
        try:
            request = (
                b"POST /v1/evaluate HTTP/1.1\r\nHost: kaq\r\n"
                b"Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
                b'{"account_id": "xx"}'
            )
            held: list[float] = []
            lock = threading.Lock()

            def client(body_only: bool) -> None:
                sock = socket.create_connection(("127.0.0.1", s.port))
                start = time.monotonic()
                head, _, body = request.partition(b"\r\n\r\n")
                if body_only:
                    sock.sendall(head + b"\r\n\r\n")
                    data = body
                else:
                    data = request
                try:
                    for b in data:
                        sock.sendall(bytes([b]))
                        time.sleep(1)
                        if time.monotonic() - start > args.cap:
                            break
                except OSError:
                    pass
                with lock:
                    held.append(time.monotonic() - start)
                sock.close()

            threads = [
                threading.Thread(target=client, args=(i % 2 == 1,)) for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            t0 = time.monotonic()
            ok = httpx.get(s.url + "/healthz").status_code
            normal = (time.monotonic() - t0) * 1e3
            for t in threads:
                t.join()
            print(
                f"{args.clients} byte-a-second clients (half headers, half body): held "
                f"median {statistics.median(held):.1f} s, max {max(held):.1f} s "
                f"(cap {args.cap} s); /healthz meanwhile {ok} in {normal:.1f} ms"
            )
        finally:
            s.stop()


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new schema, dropped afterwards (never public)."""
    import psycopg

    schema = f"kaq_audit_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def password(args) -> None:
    with fresh_schema() as pg, tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d), db=pg + "&password=hunter2")
        s.stop()
        lines = [x for x in s.text().splitlines() if "hunter2" in x]
        print(f"?password= URL: {len(lines)} log line(s) with the password: {lines}")
    out = subprocess.run(
        [KAQ, "serve", "--db", "mysql://u:hunter2@db.example/kaq"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    text = out.stdout + out.stderr
    print(f"mysql:// URL: exit {out.returncode}, password shown: {'hunter2' in text}: {text!r}")


def readyz_sqlite(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d))
        suffixes = ("", "-wal") if args.no_shm else ("", "-wal", "-shm")
        files = [Path(d) / f"kaq.db{x}" for x in suffixes if (Path(d) / f"kaq.db{x}").exists()]
        try:
            for p in files:
                subprocess.run(["chattr", "+i", str(p)], check=True)
            try:
                ev = httpx.post(s.url + "/v1/evaluate", json={"account_id": "r"}).status_code
                ready = httpx.get(s.url + "/readyz").status_code
            except httpx.HTTPError as exc:
                ev = ready = f"no answer ({exc})"
            names = [p.name for p in files]
            print(f"SQLite files {names} immutable: /v1/evaluate {ev}, /readyz {ready}")
        finally:
            for p in files:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            s.stop()


def readyz_postgres(args) -> None:
    import psycopg

    schema = f"kaq_audit_{os.getpid()}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as d:
            s = Serve(Path(d), db=url)
            try:
                with psycopg.connect(PG, autocommit=True) as c:
                    c.execute(f'DROP SCHEMA "{schema}" CASCADE')
                    c.execute(f'CREATE SCHEMA "{schema}"')
                out = []
                for _ in range(3):
                    ev = httpx.post(s.url + "/v1/evaluate", json={"account_id": "r"})
                    ready = httpx.get(s.url + "/readyz").status_code
                    out.append(f"evaluate {ev.status_code} readyz {ready}")
                print(f"PostgreSQL schema dropped and recreated empty: {out}")
            finally:
                s.stop()
    finally:
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def host_redirect(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d))
        try:
            for path in ("/v1/rulesets/", "/healthz/"):
                r = httpx.get(s.url + path, headers={"host": "evil.example"})
                print(
                    f"GET {path} Host: evil.example -> {r.status_code} "
                    f"location={r.headers.get('location')!r} type={r.headers.get('content-type')}"
                )
        finally:
            s.stop()


def bad_length(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        s = Serve(Path(d))
        try:
            for value in (b"abc", b"-1", b"1, 2"):
                with socket.create_connection(("127.0.0.1", s.port)) as sock:
                    sock.sendall(
                        b"POST /v1/evaluate HTTP/1.1\r\nHost: kaq\r\n"
                        b"Content-Type: application/json\r\nContent-Length: "
                        + value
                        + b"\r\n\r\n{}"
                    )
                    sock.settimeout(5)
                    data = b""
                    try:
                        while True:
                            chunk = sock.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                    except TimeoutError:
                        pass
                head, _, body = data.partition(b"\r\n\r\n")
                ctype = [x for x in head.split(b"\r\n") if x.lower().startswith(b"content-type")]
                print(f"Content-Length: {value!r} -> {head[:15]!r} {ctype} {body[:80]!r}")
        finally:
            s.stop()


def pg_unreachable(args) -> None:
    with tempfile.TemporaryDirectory() as d:
        rs = Path(d) / "rulesets"
        shutil.copytree(REPO / "tests/api/fixtures/tiny", rs)
        env = {**os.environ, "KAQ_DEFAULT_RULESET": "tiny"}
        out = subprocess.run(
            [
                KAQ,
                "serve",
                "--port",
                str(free_port()),
                "--rulesets",
                str(rs),
                "--db",
                "postgresql://postgres:hunter2@127.0.0.1:1/test",
            ],
            capture_output=True,
            text=True,
            cwd=d,
            env=env,
            timeout=60,
        )
        text = out.stdout + out.stderr
        print(
            f"unreachable PostgreSQL: exit {out.returncode}, {len(text.splitlines())} lines, "
            f"Traceback x{text.count('Traceback')}, password shown: {'hunter2' in text}"
        )
        print(text if args.verbose else text.splitlines()[-1:])


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--workers", type=int, default=2)
    lat.add_argument("-n", type=int, default=200)
    sub.add_parser("ndjson-reset")
    sub.add_parser("slow-clients")
    sl = sub.add_parser("slowloris")
    sl.add_argument("--clients", type=int, default=100)
    sl.add_argument("--cap", type=float, default=30)
    sub.add_parser("password")
    rs = sub.add_parser("readyz-sqlite")
    rs.add_argument("--no-shm", action="store_true", help="leave the -shm index writable")
    sub.add_parser("readyz-postgres")
    sub.add_parser("host-redirect")
    sub.add_parser("bad-length")
    pu = sub.add_parser("pg-unreachable")
    pu.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    globals()[args.cmd.replace("-", "_")](args)


if __name__ == "__main__":
    sys.exit(main())
