"""`kaq serve` as real processes: concurrent clients, kill -9 under load, a dead worker."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from conftest import KEY_FACTS, _cmdline, start_server, stop_server

from api.openapi import GUARDRAIL, KEY_ACCOUNT, POTENTIAL

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

CORPUS = [KEY_ACCOUNT, POTENTIAL, GUARDRAIL, KEY_FACTS] + [
    {**KEY_FACTS, "account_id": f"C-{i}", "annual_spend": i * 250_000, "gross_margin_pct": i - 5}
    for i in range(16)
]


def comparable(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k != "decision_id"}


def test_eight_concurrent_clients_get_the_sequential_verdicts(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            expected = [comparable(c.post("/v1/evaluate", json=f).json()) for f in CORPUS]

        def client(n: int) -> list[dict]:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                out = []
                for rnd in range(3):
                    for i in range(len(CORPUS)):
                        j = (i + n + rnd) % len(CORPUS)
                        r = c.post("/v1/evaluate", json=CORPUS[j])
                        assert r.status_code == 200, r.text
                        out.append((j, comparable(r.json())))
                return out

        with ThreadPoolExecutor(8) as pool:
            results = [x for chunk in pool.map(client, range(8)) for x in chunk]
        assert len(results) == 8 * 3 * len(CORPUS)
        for j, verdict in results:
            assert verdict == expected[j]
    finally:
        stop_server(server)


def _load(url: str, stop: threading.Event, ok_ids: list[str], n: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = c.post(
                    "/v1/evaluate",
                    json={"account_id": f"K-{n}-{i}", "annual_spend": i, "product_fit": "strong"},
                )
            except httpx.HTTPError:
                continue  # the server was killed under this request: no answer, no promise
            if r.status_code == 200:
                ok_ids.append(r.json()["decision_id"])


@pytest.mark.once
def test_kill_9_under_load_loses_no_answered_decision(tmp_path: Path) -> None:
    server = start_server(tmp_path, tiny=True)
    stop = threading.Event()
    ok_ids: list[str] = []
    threads = [threading.Thread(target=_load, args=(server.url, stop, ok_ids, n)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    answered = list(ok_ids)
    assert len(answered) > 100

    restarted = start_server(tmp_path, tiny=True)
    try:
        db = server.db_url[len("sqlite:///") :]
        with closing(sqlite3.connect(db)) as conn:  # `with conn` alone would not close it
            stored = {row[0] for row in conn.execute("SELECT decision_id FROM log")}
        missing = [d for d in answered if d not in stored]
        print(
            f"\nkill -9 under load: {len(answered)} answered, {len(stored)} stored, "
            f"{len(missing)} missing"
        )
        assert not missing
        with httpx.Client(base_url=restarted.url, timeout=10) as c:
            assert c.get(f"/v1/decisions/{answered[-1]}").status_code == 200
            assert c.post("/v1/evaluate", json={"account_id": "after"}).status_code == 200
    finally:
        stop_server(restarted)


def _batch_load(url: str, stop: threading.Event, ok_ids: list[str], n: int) -> None:
    """JSON batches of 5: every verdict in an answered batch is acknowledged."""
    with httpx.Client(base_url=url, timeout=10) as c:
        i = 0
        while not stop.is_set():
            i += 1
            accounts = [{"account_id": f"B-{n}-{i}-{j}", "annual_spend": j} for j in range(5)]
            try:
                r = c.post("/v1/evaluate/batch", json={"accounts": accounts})
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                ok_ids.extend(x["decision_id"] for x in r.json()["results"])


def _stored_ids(db_url: str) -> set[str]:
    if db_url.startswith("sqlite"):
        with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn:
            return {row[0] for row in conn.execute("SELECT decision_id FROM log")}
    import psycopg

    with psycopg.connect(db_url) as conn:
        return {row[0] for row in conn.execute("SELECT decision_id FROM log")}


@pytest.mark.once
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_of_two_workers_under_load_loses_no_acknowledged_decision(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    db_url = (
        f"sqlite:///{tmp_path / 'kaq.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    server = start_server(tmp_path, workers=2, tiny=True, db_url=db_url, new_session=True)
    workers = server.wait_for_workers(2)
    assert len(workers) == 2
    stop = threading.Event()
    ok_ids: list[str] = []
    threads = [
        threading.Thread(target=_load, args=(server.url, stop, ok_ids, n)) for n in range(6)
    ] + [threading.Thread(target=_batch_load, args=(server.url, stop, ok_ids, n)) for n in range(2)]
    for t in threads:
        t.start()
    time.sleep(3)
    os.killpg(server.proc.pid, signal.SIGKILL)  # the supervisor and both workers at once
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    answered = list(ok_ids)
    assert len(answered) > 100
    for pid in workers:  # no worker survived to finish writing after the kill
        assert not Path(f"/proc/{pid}").exists() or b"spawn_main" not in _cmdline(pid)

    restarted = start_server(tmp_path, workers=2, tiny=True, db_url=db_url)
    try:
        stored = _stored_ids(db_url)
        missing = [d for d in answered if d not in stored]
        print(
            f"\nkill -9 of 2 workers on {database}: {len(answered)} acknowledged, "
            f"{len(stored)} stored, {len(missing)} missing"
        )
        assert not missing
        with httpx.Client(base_url=restarted.url, timeout=10) as c:
            for decision_id in (answered[0], answered[-1]):
                assert c.get(f"/v1/decisions/{decision_id}").status_code == 200
            assert c.post("/v1/evaluate", json={"account_id": "after"}).status_code == 200
    finally:
        stop_server(restarted)


@pytest.mark.once
def test_a_killed_worker_is_replaced_and_the_others_keep_serving(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2, tiny=True)
    try:
        workers = server.wait_for_workers(2)
        assert len(workers) == 2
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        statuses = []
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for i in range(60):
                try:
                    statuses.append(
                        c.post("/v1/evaluate", json={"account_id": f"W-{i}"}).status_code
                    )
                except httpx.HTTPError:
                    statuses.append(0)
                time.sleep(0.05)
        assert statuses.count(200) >= 55, statuses
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            now = server.children()
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.5)
        now = server.children()
        print(f"\nworkers before {workers}, after {now}")
        assert len(now) == 2 and victim not in now and workers[1] in now
        with httpx.Client(base_url=server.url, timeout=10) as c:
            ok = sum(
                c.post("/v1/evaluate", json={"account_id": f"X-{i}"}).status_code == 200
                for i in range(20)
            )
        assert ok == 20
    finally:
        stop_server(server)


@pytest.mark.parametrize("workers", [1])
def test_sighup_reloads_the_rulesets(tmp_path: Path, workers: int) -> None:
    server = start_server(tmp_path, tiny=True, workers=workers)
    try:
        path = tmp_path / "rulesets" / "tiny.yaml"
        path.write_text(path.read_text().replace('version: "1"', 'version: "2"'))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        version = None
        while time.monotonic() < deadline:
            version = httpx.get(server.url + "/v1/rulesets").json()["rulesets"][0]["version"]
            if version == "2":
                break
            time.sleep(0.2)
        assert version == "2"
    finally:
        stop_server(server)


def test_serve_with_an_unreachable_postgres_says_so_in_one_line_and_exits_2(
    tmp_path: Path,
) -> None:
    # regression: a 65-line traceback per worker (and exit 3)
    import subprocess
    import sys

    from conftest import REPO, copy_rulesets, free_port

    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/test?sslpassword=hunter3"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "kaq"),
            "serve",
            "--rulesets",
            str(copy_rulesets(tmp_path / "rulesets", tiny=True)),
            "--port",
            str(free_port()),
            "--db",
            url,
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "KAQ_DEFAULT_RULESET": "tiny"},
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert len(out.strip().splitlines()) == 1, out
    assert "hunter" not in out and "Traceback" not in out
    assert "postgresql://postgres:***@127.0.0.1:" in out and "cannot be opened" in out
    assert "Connection refused" in out
