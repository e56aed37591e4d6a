"""Accounts per second through one `kaq serve` replica, HTTP and decision log included.

    .venv/bin/python benchmarks/serve_throughput.py [--workers 2] [--seconds 10] [--db URL]

Starts `kaq serve --workers N` on 127.0.0.1 (decision log: a fresh PostgreSQL schema of
--db, default the local test database; or SQLite with --db sqlite), then for --seconds each:
single-account `POST /v1/evaluate` from 8 client threads (full view, then `?view=decision`),
and `POST /v1/evaluate/batch` of 100 accounts from 2 threads. Prints accounts/s, the
p50/p99 latency of each, and the server's CPU time per account (all its processes, from
/proc): the figure that does not depend on what else the machine runs. The client runs on
the same machine as the server, so on a small machine it takes cores from it: the rates are
a floor. For docs/deploy.md's sizing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from procstat import cpu_seconds  # this folder: /proc figures of a process tree

ROOT = Path(__file__).resolve().parents[1]
KAQ = str(Path(sys.executable).parent / "kaq")
PG = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PID = 0


def load(url: str, body_of, threads: int, seconds: float, per_request: int) -> str:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        nonlocal failures
        with httpx.Client(timeout=60) as http:
            i = k
            while time.monotonic() < stop:
                started = time.perf_counter()
                r = http.post(url, json=body_of(i))
                took = time.perf_counter() - started
                i += threads
                with lock:
                    if r.status_code == 200:
                        latencies.append(took)
                    else:
                        failures += 1

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    cpu0 = cpu_seconds(SERVER_PID)
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(SERVER_PID) - cpu0
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    p50 = statistics.median(latencies)
    return (
        f"{len(latencies) * per_request / wall:8,.0f} accounts/s  "
        f"{len(latencies) / wall:7,.0f} requests/s  p50 {p50 * 1000:6.1f} ms"
        f"  p99 {p99 * 1000:6.1f} ms  failed {failures}"
        f"  server CPU {cpu * 1e6 / max(1, len(latencies) * per_request):6.0f} µs/account"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--db", default=PG, help="PostgreSQL URL, or `sqlite`")
    args = parser.parse_args()

    accounts = [
        json.loads(line)
        for line in (ROOT / "corpus" / "accounts-2000.jsonl").read_text("utf-8").splitlines()
    ]
    tmp = Path(tempfile.mkdtemp(prefix="kaq-bench-serve-"))
    schema = None
    if args.db == "sqlite":
        db = f"sqlite:///{tmp / 'kaq.db'}"
    else:
        import psycopg

        schema = f"kaq_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.db, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        db = f"{args.db}?options=-csearch_path%3D{schema}"
    port = free_port()
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [KAQ, "serve", "--port", str(port), "--workers", str(args.workers), "--db", db,
         "--rulesets", str(ROOT / "rulesets"), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    global SERVER_PID
    SERVER_PID = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit((tmp / "serve.log").read_text()[-2000:])
            time.sleep(0.2)
        n = len(accounts)
        print(
            f"kaq serve --workers {args.workers}, decision log {db.split(':', 1)[0]}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        one = base + "/v1/evaluate"
        print("single, full view    ", load(one, lambda i: accounts[i % n], 8, args.seconds, 1))
        print(
            "single, decision view",
            load(one + "?view=decision", lambda i: accounts[i % n], 8, args.seconds, 1),
        )

        def batch(i: int) -> dict:
            start = (i * 100) % (n - 100)
            return {"accounts": accounts[start : start + 100]}

        print(
            "batch of 100, full   ",
            load(base + "/v1/evaluate/batch", batch, 2, args.seconds, 100),
        )
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
        if schema is not None:
            import psycopg

            with psycopg.connect(args.db, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
