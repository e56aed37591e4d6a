"""The decision log on SQLite and PostgreSQL: migrations, round trips, the service on each."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from conftest import KEY_FACTS, running, settings_for

from api.decision_log import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Decision,
    DecisionLog,
    DecisionLogError,
    SchemaTooNew,
    backend_for,
)
from api.ids import new_decision_id

pytestmark = pytest.mark.anyio


def decision(**over) -> Decision:
    base = dict(
        decision_id=new_decision_id(),
        ruleset_name="key-account",
        ruleset_version="1",
        ruleset_digest="sha256:00",
        account_id="中国银行-1",
        qualification="key_account",
        duration_ms=1.5,
        facts={"account_id": "中国银行-1", "name": '\u0000\u2028 "q"'},
        verdict={"score": 85, "nested": {"x": [1, 2.5, None]}},
    )
    base.update(over)
    return Decision(**base)


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
    await log.write([d, decision(account_id=None, qualification=None)])
    got = await log.get(d.decision_id)
    assert got is not None
    assert got["facts"] == d.facts and got["verdict"] == d.verdict
    assert got["ruleset"] == {"name": "key-account", "version": "1", "digest": "sha256:00"}
    assert got["account_id"] == "中国银行-1" and got["duration_ms"] == 1.5
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
        with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
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
