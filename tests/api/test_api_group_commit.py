"""Group commit: concurrent writes share transactions; none is acknowledged before it is durable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_FACTS, running, settings_for
from test_api_decision_log import decision

from api.decision_log import DecisionLog, DecisionLogError

pytestmark = pytest.mark.anyio


def slow_commits(log: DecisionLog, seconds: float = 0.02) -> list[int]:
    """Make every commit take `seconds` (a slow disk); returns the sizes committed, in order."""
    insert = log._backend.insert
    sizes: list[int] = []

    def slow(rows: list[tuple[Any, ...]]) -> None:
        time.sleep(seconds)
        insert(rows)
        sizes.append(len(rows))

    log._backend.insert = slow  # type: ignore[method-assign]
    return sizes


async def test_concurrent_writes_are_committed_in_fewer_transactions(db_url: str) -> None:
    log = DecisionLog(db_url)
    await log.open()
    sizes = slow_commits(log)
    batches = [[decision()] for _ in range(40)] + [[decision(), decision()] for _ in range(5)]
    await asyncio.gather(*(log.write(b) for b in batches))
    written = sum(len(b) for b in batches)
    assert log.committed == sum(sizes) == written
    assert log.commits == len(sizes) < len(batches) // 4, sizes
    for b in batches:
        for d in b:
            got = await log.get(d.decision_id)
            assert got is not None and got["decision_id"] == d.decision_id
    await log.close()


async def test_a_write_is_acknowledged_only_after_its_group_commits(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'g.db'}")
    await log.open()
    insert = log._backend.insert
    committed: set[str] = set()

    def recording(rows: list[tuple[Any, ...]]) -> None:
        time.sleep(0.01)
        insert(rows)
        committed.update(row.decision_id for row in rows)

    log._backend.insert = recording  # type: ignore[method-assign]

    async def write_and_check() -> None:
        d = decision()
        await log.write([d])
        assert d.decision_id in committed  # acknowledged => its transaction has committed

    await asyncio.gather(*(write_and_check() for _ in range(30)))
    assert log.commits < 30
    await log.close()


async def test_one_failing_write_fails_alone_and_its_group_is_still_committed(
    tmp_path: Path,
) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'g.db'}")
    await log.open()
    taken = decision()
    await log.write([taken])
    slow_commits(log)
    good = [[decision()] for _ in range(6)]
    clash = [decision(), decision(decision_id=taken.decision_id)]  # primary key taken
    outcomes = await asyncio.gather(
        *(log.write(b) for b in [*good[:3], clash, *good[3:]]), return_exceptions=True
    )
    assert isinstance(outcomes[3], DecisionLogError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [None] * 6
    for b in good:
        assert await log.get(b[0].decision_id) is not None
    assert await log.get(clash[0].decision_id) is None  # a write stays all-or-nothing
    await log.close()


async def test_a_read_queued_after_a_write_sees_it(db_url: str) -> None:
    log = DecisionLog(db_url)
    await log.open()
    slow_commits(log)
    ds = [decision() for _ in range(10)]
    results = await asyncio.gather(
        *(log.write([d]) for d in ds), *(log.get(d.decision_id) for d in ds)
    )
    assert all(r is not None for r in results[10:])
    await log.close()


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    log = DecisionLog(url)
    await log.open()
    slow_commits(log)
    ds = [decision() for _ in range(10)]
    writes = [asyncio.ensure_future(log.write([d])) for d in ds]
    await asyncio.sleep(0)
    await log.close()
    await asyncio.gather(*writes)
    again = DecisionLog(url)
    await again.open()
    assert all([await again.get(d.decision_id) for d in ds])
    await again.close()


async def test_the_service_group_commits_concurrent_evaluations(
    db_url: str, tmp_path: Path
) -> None:
    async with running(settings_for(tmp_path, db_url=db_url)) as r:
        log = r.state.decision_log
        slow_commits(log, 0.03)  # a disk whose fsync is slower than an evaluation
        before = log.commits
        n = 32
        answers = await asyncio.gather(
            *(
                r.client.post("/v1/evaluate", json={**KEY_FACTS, "account_id": f"G-{i}"})
                for i in range(n)
            )
        )
        assert [a.status_code for a in answers] == [200] * n
        assert log.commits - before < n
        for a in answers:
            stored = await r.client.get(f"/v1/decisions/{a.json()['decision_id']}")
            assert stored.status_code == 200 and stored.json()["verdict"] == a.json()
        text = (await r.client.get("/metrics")).text
        assert "kaq_decision_log_commit_decisions_count" in text
        assert "kaq_decision_log_commit_seconds_bucket" in text


async def test_a_write_racing_close_is_still_committed(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'g.db'}")
    await log.open()
    slow_commits(log)
    early, late = decision(), decision()
    first = asyncio.ensure_future(log.write([early]))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(log.close())
    await asyncio.sleep(0.005)  # the stop is queued; the thread has not reached it yet
    await asyncio.gather(first, closing, log.write([late]))
    assert await log.get(late.decision_id) is not None  # served by a fresh thread
    assert await log.get(early.decision_id) is not None
    await log.close()
