"""A batch's chunks are pipelined: the next chunk is decided while the previous one commits,
and still no answer leaves before its decisions are durably logged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from builders import ROOT
from starlette.requests import ClientDisconnect

from api.decision_log import DecisionLogError, Entry
from api.metrics import Metrics
from api.service import Item, Service
from engine import load_rulesets
from engine.tools.corpus import generate_accounts

pytestmark = pytest.mark.anyio


class SlowLog:
    """A decision log whose commits take `delay` seconds and are recorded as events."""

    def __init__(self, events: list[str], delay: float = 0.05, fail_at: int | None = None):
        self.events = events
        self.delay = delay
        self.fail_at = fail_at
        self.writes = 0
        self.committed: list[str] = []

    async def store_rulesets(self, sources: Sequence[Any]) -> None:
        return None

    async def write(self, entries: Sequence[Entry]) -> None:
        n = self.writes
        self.writes += 1
        self.events.append(f"commit {n} started")
        await asyncio.sleep(self.delay)
        if n == self.fail_at:
            self.events.append(f"commit {n} failed")
            raise DecisionLogError("The decision log failed: OperationalError.")
        self.committed.extend(e.decision_id for e in entries)
        self.events.append(f"commit {n} done")


@pytest.fixture(scope="module")
def rs():
    ruleset = load_rulesets(ROOT / "rulesets")["key-account"]
    yield ruleset
    ruleset.close()


async def _items(n: int) -> AsyncIterator[Item]:
    for i, facts in enumerate(generate_accounts(n, seed=2)):
        yield Item(i, facts)


def _service(log: SlowLog) -> Service:
    return Service(None, log, Metrics())  # type: ignore[arg-type]


def _decided(events: list[str], service: Service) -> None:
    real = service._decide_chunk

    async def decide(*args: Any, **kwargs: Any):
        events.append("decide")
        out = await real(*args, **kwargs)
        events.append("decided")
        return out

    service._decide_chunk = decide  # type: ignore[method-assign]


async def test_chunks_come_in_order_each_after_its_commit_and_the_next_is_decided_meanwhile(
    rs,
) -> None:
    events: list[str] = []
    log = SlowLog(events)
    service = _service(log)
    _decided(events, service)
    got: list[bytes] = []
    async for results in service.stream_batch(rs, _items(10), 3, view="decision"):
        events.append(f"yield {len(got) // 3}")
        for body in results:
            # acknowledged only once committed
            assert orjson.loads(body)["decision_id"] in log.committed
        got.extend(results)
    ids = [orjson.loads(b)["account_id"] for b in got]
    assert ids == [a["account_id"] for a in generate_accounts(10, seed=2)]
    assert log.writes == 4  # 3 + 3 + 3 + 1
    # the second chunk is decided while the first one commits
    second_decided = events.index("decided", events.index("decided") + 1)
    assert events.index("commit 0 started") < second_decided < events.index("commit 0 done")
    assert events.index("commit 0 done") < events.index("yield 0")


async def test_a_failed_commit_stops_the_batch_and_no_later_chunk_is_answered(rs) -> None:
    events: list[str] = []
    log = SlowLog(events, fail_at=1)
    service = _service(log)
    _decided(events, service)
    got: list[list[bytes]] = []
    with pytest.raises(DecisionLogError):
        async for results in service.stream_batch(rs, _items(30), 3, view="decision"):
            got.append(results)
    assert len(got) == 1  # the first chunk; the second failed to commit, nothing after it
    assert events.count("decide") <= 3  # at most one chunk decided beyond the failed one


async def test_a_client_that_leaves_stops_the_deciding_and_gets_no_unlogged_answer(rs) -> None:
    events: list[str] = []
    log = SlowLog(events, delay=0.01)
    service = _service(log)
    _decided(events, service)
    calls = 0

    async def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls > 5:  # gone after a few chunks
            raise ClientDisconnect()

    got: list[bytes] = []
    with pytest.raises(ClientDisconnect):
        async for results in service.stream_batch(rs, _items(300), 3, checkpoint, "decision"):
            got.extend(results)
    await asyncio.sleep(0.05)  # a commit left running finishes on its own

    assert all(orjson.loads(b)["decision_id"] in log.committed for b in got)
    # 100 chunks were there to read: one more is decided at most, and not answered
    assert events.count("decide") <= 4
