"""Two `kaq serve` replicas on two ports share one PostgreSQL database for their rulesets
(KAQ_RULESET_SOURCE=db): `kaq publish` reaches both within 2 s, a broken publish reaches
neither, a replica killed mid-publish comes back on the new version, and a client sees no
failed request and no batch with two versions in it.

Each test has a schema of its own (`pg_url`); the replicas, like every process here, talk
to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import REPO, Server, copy_rulesets, free_port, start_server, stop_server

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

KAQ = str(Path(sys.executable).parent / "kaq")
DB_SOURCE = {"KAQ_RULESET_SOURCE": "db"}  # polling every 0.5 s, the default
ACCOUNTS = [
    json.loads(line)
    for line in (REPO / "corpus" / "accounts-2000.jsonl").read_text("utf-8").splitlines()[:40]
]


def kaq_publish(folder: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAQ, "publish", str(folder), "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit(folder: Path, marker: str) -> None:
    """A change that passes every test case: a comment (a new digest, the same decisions)."""
    path = folder / "key-account.yaml"
    path.write_text(path.read_text("utf-8") + f"\n# {marker}\n", "utf-8")


def serving(server: Server) -> str | None:
    try:
        return httpx.get(server.url + "/v1/rulesets", timeout=5).json()["source"]["digest"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def versions(db: str) -> list[tuple[int, str]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT version, digest FROM kaq_ruleset_versions ORDER BY version"
        ).fetchall()


def wait_until(servers: list[Server], digest: str, timeout: float = 10) -> dict[str, float]:
    """When (time.time()) each server was first seen serving `digest`."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(servers) and time.monotonic() < deadline:
        for s in servers:
            if s.url not in seen and serving(s) == digest:
                seen[s.url] = time.time()
        time.sleep(0.02)
    assert len(seen) == len(servers), f"only {sorted(seen)} serve {digest}"
    return seen


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path):
    """Version 1 published, then two replicas serving it."""
    folder = copy_rulesets(tmp_path / "published")
    done = kaq_publish(folder, pg_url, "--note", "first")
    assert done.returncode == 0, done.stderr
    servers = [start_server(tmp_path / name, db_url=pg_url, env=DB_SOURCE) for name in ("a", "b")]
    try:
        yield folder, servers
    finally:
        for s in servers:
            stop_server(s)


def published_at(db: str, version: int) -> float:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM published_at) FROM kaq_ruleset_versions WHERE version = %s",
            [version],
        ).fetchone()
    assert row is not None
    return float(row[0])


def test_a_publish_reaches_both_replicas_within_2_seconds(replicas, pg_url, capsys) -> None:
    folder, servers = replicas
    first = versions(pg_url)[-1][1]
    assert {serving(s) for s in servers} == {first}
    switch: list[float] = []
    for n in range(3):
        edit(folder, f"change {n}")
        done = kaq_publish(folder, pg_url, "--note", f"change {n}")
        assert done.returncode == 0, done.stderr
        version, digest = versions(pg_url)[-1]
        seen = wait_until(servers, digest, timeout=5)
        # from the version's transaction in the database to each replica serving it
        switch += [at - published_at(pg_url, version) for at in seen.values()]
    assert max(switch) < 2.0, switch
    listing = httpx.get(servers[0].url + "/v1/rulesets", timeout=5).json()["source"]
    assert listing["kind"] == "db" and listing["version"] == 4 and listing["note"] == "change 2"
    with capsys.disabled():
        print(f"\nswitch-over after publish, 2 replicas x 3 publishes: {sorted(switch)}")


@pytest.mark.once
def test_a_broken_publish_changes_nothing_anywhere(replicas, pg_url) -> None:
    folder, servers = replicas
    before = versions(pg_url)
    text = (folder / "key-account.yaml").read_text("utf-8")
    (folder / "key-account.yaml").write_text(
        text.replace("gross_margin_pct < ", "gross_margn_pct < ", 1), "utf-8"
    )
    broken = kaq_publish(folder, pg_url)
    assert broken.returncode == 1
    assert "expr.unknown_name" in broken.stderr and "nothing was published" in broken.stderr
    # a ruleset that compiles but fails its own test cases is refused too
    cases = folder / "key-account.tests.yaml"
    (folder / "key-account.yaml").write_text(text, "utf-8")
    cases.write_text(
        cases.read_text("utf-8").replace("qualification: key_account", "qualification: x", 1),
        "utf-8",
    )
    failing = kaq_publish(folder, pg_url)
    assert failing.returncode == 1 and "FAILED" in failing.stderr
    assert versions(pg_url) == before
    time.sleep(1.5)  # longer than a poll: nobody moved
    assert {serving(s) for s in servers} == {before[-1][1]}


@pytest.mark.once
def test_a_replica_killed_mid_publish_comes_back_on_the_new_version(
    replicas, pg_url, tmp_path
) -> None:
    folder, servers = replicas
    a, b = servers
    edit(folder, "while b is down")
    publish = subprocess.Popen(
        [KAQ, "publish", str(folder), "--db", pg_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    b.proc.kill()  # kill -9 while the publish runs its gate
    b.proc.wait(10)
    out, err = publish.communicate(timeout=120)
    assert publish.returncode == 0, err
    digest = versions(pg_url)[-1][1]
    wait_until([a], digest, timeout=5)
    port = int(b.url.rsplit(":", 1)[1])
    again = start_server(tmp_path / "b", db_url=pg_url, env=DB_SOURCE, port=port)
    servers[1] = again  # stopped by the fixture
    assert serving(again) == digest


@pytest.mark.once
def test_polling_switches_when_the_notification_is_missed_or_the_connection_drops(
    replicas, pg_url
) -> None:
    folder, servers = replicas
    # a version stored without its NOTIFY (as if the notification were lost)
    edit(folder, "no notification")
    done = kaq_publish(folder, pg_url)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO kaq_ruleset_versions (version, digest, files, rulesets, who, note) "
            "SELECT version + 1, 'sha256:silent', files, rulesets, who, 'silent' "
            "FROM kaq_ruleset_versions ORDER BY version DESC LIMIT 1"
        )
    started = time.time()
    seen = wait_until(servers, "sha256:silent", timeout=5)
    assert max(seen.values()) - started < 2.0
    # every replica's LISTEN connection cut: they reconnect, and poll meanwhile
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cut = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'kaq-ruleset-listener' AND datname = current_database()"
        ).fetchone()
    assert cut is not None and cut[0] >= 2
    edit(folder, "after the cut")
    done = kaq_publish(folder, pg_url)
    assert done.returncode == 0, done.stderr
    started = time.time()
    seen = wait_until(servers, versions(pg_url)[-1][1], timeout=5)
    assert max(seen.values()) - started < 2.0


@dataclass
class Client:
    """Batches against both replicas in turn, until stopped; what it saw, batch by batch."""

    servers: list[Server]
    answers: list[tuple[float, int, set[str]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                server = self.servers[n % len(self.servers)]
                n += 1
                try:
                    r = http.post(server.url + "/v1/evaluate/batch", json={"accounts": ACCOUNTS})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{server.url}: {exc!r}")
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{server.url}: {r.status_code} {r.text[:200]}")
                    continue
                results = r.json()["results"]
                errors = [x for x in results if "error" in x]
                if errors or len(results) != len(ACCOUNTS):
                    self.failures.append(f"{server.url}: {errors[:1]}")
                digests = {x["ruleset"]["digest"] for x in results if "ruleset" in x}
                self.answers.append((time.time(), n % len(self.servers), digests))


@pytest.mark.once
def test_a_client_sees_no_failure_and_no_mixed_batch_during_publishes(
    replicas, pg_url, capsys
) -> None:
    folder, servers = replicas
    client = Client(servers)
    thread = threading.Thread(target=client.run)
    thread.start()
    try:
        time.sleep(1)
        marks = []
        for n in range(3):
            edit(folder, f"under load {n}")
            done = kaq_publish(folder, pg_url)
            assert done.returncode == 0, done.stderr
            marks.append(versions(pg_url)[-1][0])
            time.sleep(1.5)
    finally:
        client.stop.set()
        thread.join(60)
    assert client.failures == []
    assert len(client.answers) > 20
    mixed = [a for a in client.answers if len(a[2]) != 1]
    assert mixed == []  # every batch decided by one ruleset version, whole
    by_replica = [{next(iter(d)) for _t, r, d in client.answers if r == i} for i in (0, 1)]
    assert all(len(s) >= 4 for s in by_replica)  # each replica moved through the versions
    with capsys.disabled():
        print(
            f"\nclient during 3 publishes: {len(client.answers)} batches of {len(ACCOUNTS)}, "
            f"0 failed, 0 mixed; versions published {marks}"
        )


def test_serve_on_the_db_source_refuses_to_start_before_anything_is_published(
    pg_url, tmp_path
) -> None:
    with pytest.raises(RuntimeError, match="kaq publish"):
        start_server(tmp_path, db_url=pg_url, env=DB_SOURCE, port=free_port(), ready_timeout=30)
