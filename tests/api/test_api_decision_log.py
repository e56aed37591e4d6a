"""The decision log on SQLite and PostgreSQL: migrations, round trips, the service on each."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from conftest import KEY_FACTS, PG_URL, running, settings_for

from api.decision_log import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DecisionLog,
    DecisionLogError,
    Entry,
    RulesetSource,
    SchemaTooNew,
    backend_for,
    facts_json,
)
from api.ids import new_decision_id

pytestmark = pytest.mark.anyio


FACTS = {"account_id": "中国银行-1", "name": '\u0000\u2028 "q"', "x": [1, 2.5, None]}


def decision(**over) -> Entry:
    base = dict(
        decision_id=new_decision_id(),
        ruleset_digest="sha256:00",
        account_id="中国银行-1",
        qualification="key_account",
        score=85,
        view="full",
        duration_ms=1.5,
        kaq_version="test",
        facts=facts_json(FACTS),
    )
    base.update(over)
    return Entry(**base)


async def test_open_creates_the_schema_and_is_idempotent(db_url: str) -> None:
    log = DecisionLog(db_url)
    assert await log.open() == SCHEMA_VERSION
    await log.close()
    log = DecisionLog(db_url)
    assert await log.open() == SCHEMA_VERSION
    assert await log.schema_version() == SCHEMA_VERSION
    await log.close()


async def test_write_then_read_round_trips_exactly(db_url: str) -> None:
    log = DecisionLog(db_url)
    await log.open()
    d = decision()
    await log.store_rulesets([RulesetSource("sha256:00", "key-account", "1", "kaq: 1\n")])
    await log.write([d, decision(account_id=None, qualification=None, score=None)])
    got = await log.get(d.decision_id)
    assert got is not None
    assert got["facts"] == FACTS and got["ruleset_digest"] == "sha256:00"
    assert got["ruleset"] == {"name": "key-account", "version": "1"}
    assert (await log.ruleset("sha256:00")).source == "kaq: 1\n"
    assert got["account_id"] == "中国银行-1" and got["duration_ms"] == 1.5
    assert got["score"] == 85 and got["view"] == "full" and got["kaq_version"] == "test"
    assert got["created_at"].startswith(str(d.created_at.year))
    assert await log.get("missing") is None
    await log.check_writable()
    await log.close()


async def test_duplicate_id_in_one_chunk_fails_the_whole_chunk_on_sqlite(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.db'}")
    await log.open()
    d = decision()
    with pytest.raises(DecisionLogError):
        await log.write([decision(decision_id="X" * 26), d, decision(decision_id="X" * 26)])
    assert await log.get(d.decision_id) is None  # one transaction: nothing half-written
    await log.close()


async def test_an_older_database_is_migrated_forward(db_url: str) -> None:
    backend = backend_for(db_url)
    first = MIGRATIONS[0]
    # Build a version-1 database by hand, as an older kaq would have left it.
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url[len("sqlite:///") :])
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for s in first.sqlite:
            conn.execute(s)
        conn.execute("INSERT INTO schema_version VALUES (1, 'x', 'then')")
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            for s in first.postgres:
                conn.execute(s)
            conn.execute("INSERT INTO schema_version VALUES (1, 'x', now())")
    del backend
    log = DecisionLog(db_url)
    assert await log.open() == SCHEMA_VERSION > 1
    await log.write([decision()])
    await log.close()


async def test_a_newer_database_is_refused(db_url: str) -> None:
    log = DecisionLog(db_url)
    await log.open()
    await log.close()
    if db_url.startswith("sqlite"):
        # a Connection's `with` commits but does not close (3.13 warns of the open one)
        with closing(sqlite3.connect(db_url[len("sqlite:///") :])) as conn, conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'future', 'later')")
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'future', now())")
    log = DecisionLog(db_url)
    with pytest.raises(SchemaTooNew):
        await log.open()
    await log.close()


async def test_concurrent_workers_migrate_once(db_url: str) -> None:
    logs = [DecisionLog(db_url) for _ in range(4)]
    assert await asyncio.gather(*(log.open() for log in logs)) == [SCHEMA_VERSION] * 4
    await asyncio.gather(*(log.write([decision()]) for log in logs))
    await asyncio.gather(*(log.close() for log in logs))


async def test_service_logs_every_verdict_before_answering(db_url: str, tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, db_url=db_url)) as r:
        one = (await r.client.post("/v1/evaluate", json=KEY_FACTS)).json()
        batch = (
            await r.client.post(
                "/v1/evaluate/batch", json={"accounts": [KEY_FACTS, {"bad": 1}, KEY_FACTS]}
            )
        ).json()["results"]
        ids = [one["decision_id"], batch[0]["decision_id"], batch[2]["decision_id"]]
        for decision_id in ids:
            got = (await r.client.get(f"/v1/decisions/{decision_id}")).json()
            assert got["decision_id"] == decision_id
            assert got["verdict"]["decision_id"] == decision_id
        ready = (await r.client.get("/readyz")).json()
        assert ready["decision_log"] == db_url.split(":", 1)[0]


async def test_evaluate_is_503_when_the_log_cannot_be_written(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path)) as r:
        log = r.state.decision_log

        def broken(rows):
            raise OSError("disk full")

        log._backend.insert = broken  # type: ignore[method-assign]
        resp = await r.client.post("/v1/evaluate", json=KEY_FACTS)
        assert resp.status_code == 503
        assert resp.json()["type"] == "urn:kaq:problem:decision-log-unavailable"

        def unwritable():
            raise OSError("read-only")

        log._backend.probe = unwritable  # type: ignore[method-assign]
        assert (await r.client.get("/readyz")).status_code == 503
        assert (await r.client.get("/healthz")).status_code == 200


def test_many_sqlite_logs_opening_a_new_file_at_once_all_switch_to_wal(tmp_path: Path) -> None:
    # regression: concurrent `PRAGMA journal_mode=WAL` answered "database is locked" at once
    async def round_trip(i: int) -> None:
        logs = [DecisionLog(f"sqlite:///{tmp_path / f'r{i}.db'}") for _ in range(6)]
        assert await asyncio.gather(*(log.open() for log in logs)) == [SCHEMA_VERSION] * 6
        await asyncio.gather(*(log.close() for log in logs))

    async def main() -> None:
        for i in range(15):
            await round_trip(i)

    asyncio.run(main())


def _can_chattr() -> bool:
    return os.geteuid() == 0 and shutil.which("chattr") is not None


# How a log stops taking writes while its lock is still granted: the files may not grow
# (RLIMIT_FSIZE, like a full disk: any user, any file system; Python ignores SIGXFSZ, so
# the write fails with EFBIG), and the audit's own case, the files made immutable
# (chattr +i: root only, so generated only where it can run).
UNWRITABLE = ["file size limit"] + (["immutable files"] if _can_chattr() else [])


@contextmanager
def _unwritable(how: str, folder: Path) -> Iterator[None]:
    # The -shm index too: SQLite writes it through a shared mapping, and an immutable
    # mapped file answers that write with SIGBUS, killing the process, unless kaq asks first.
    files = [folder / "kaq.db", folder / "kaq.db-wal", folder / "kaq.db-shm"]
    if how == "file size limit":
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # A commit appends to the WAL: it may not grow past its size now.
        resource.setrlimit(resource.RLIMIT_FSIZE, (files[1].stat().st_size, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        return
    for f in files:
        subprocess.run(["chattr", "+i", str(f)], check=True)
    try:
        yield
    finally:
        for f in files:
            subprocess.run(["chattr", "-i", str(f)], check=True)


@pytest.mark.parametrize("how", UNWRITABLE)
async def test_readyz_is_503_while_the_log_cannot_commit_and_200_again_after(
    tmp_path: Path, how: str
) -> None:
    # regression: with the files immutable every evaluation was 503 but /readyz 200
    # (the probe took a lock and wrote nothing)
    async with running(settings_for(tmp_path)) as r:
        first = await r.client.post("/v1/evaluate", json=KEY_FACTS)
        assert first.status_code == 200
        with _unwritable(how, tmp_path):
            assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 503
            ready = await r.client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["type"] == "urn:kaq:problem:decision-log-unavailable"
            # A read must not crash either (a reader writes its mark into the -shm index).
            read = await r.client.get(f"/v1/decisions/{first.json()['decision_id']}")
            assert read.status_code == (503 if how == "immutable files" else 200)
        assert (await r.client.get("/readyz")).status_code == 200
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200


async def test_postgres_schema_dropped_and_recreated_empty_is_healed(pg_url: str, tmp_path) -> None:
    # regression: every evaluation answered 503 (relation "decisions" does not exist) while
    # /readyz answered 200; the schema was only created at start
    import psycopg

    schema = pg_url.rsplit("%3D", 1)[1]

    def drop(recreate: bool) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            if recreate:
                conn.execute(f'CREATE SCHEMA "{schema}"')

    async with running(settings_for(tmp_path, db_url=pg_url)) as r:
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200
        drop(recreate=True)
        one = await r.client.post("/v1/evaluate", json=KEY_FACTS)
        assert one.status_code == 200, one.text
        found = await r.client.get(f"/v1/decisions/{one.json()['decision_id']}")
        assert found.status_code == 200
        drop(recreate=True)
        assert (await r.client.get("/readyz")).status_code == 200
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200
        # Nowhere to create the tables: not ready, until the schema is back.
        drop(recreate=False)
        assert (await r.client.get("/readyz")).status_code == 503
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 503
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        assert (await r.client.get("/readyz")).status_code == 200
        assert await r.state.decision_log.schema_version() == SCHEMA_VERSION


async def test_a_deleted_sqlite_file_is_recreated_not_written_as_a_ghost(tmp_path: Path) -> None:
    # Writing on through the open connection would "commit" into an unlinked file.
    async with running(settings_for(tmp_path)) as r:
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200
        for f in tmp_path.glob("kaq.db*"):
            f.unlink()
        one = await r.client.post("/v1/evaluate", json=KEY_FACTS)
        assert one.status_code == 200
        with closing(sqlite3.connect(tmp_path / "kaq.db")) as conn:
            ids = [row[0] for row in conn.execute("SELECT decision_id FROM log")]
        assert ids == [one.json()["decision_id"]]
        assert (await r.client.get("/readyz")).status_code == 200
