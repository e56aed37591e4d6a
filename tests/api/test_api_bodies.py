"""Reading bodies at a pace: what counts against a slow client, and what does not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from api.bodies import BodyPace, paced_stream
from api.errors import RequestTimeout

pytestmark = [pytest.mark.anyio, pytest.mark.serial]  # serial: see pyproject.toml


class Trickle:
    """A request whose body arrives as `chunks`, each after `delay` seconds."""

    def __init__(self, chunks: list[bytes], delay: float):
        self.chunks = chunks
        self.delay = delay

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            yield chunk


async def test_a_client_slower_than_the_pace_is_answered_408_after_the_grace() -> None:
    pace = BodyPace(timeout=0.5, min_rate=500)
    started = time.monotonic()
    got = []
    with pytest.raises(RequestTimeout) as exc:
        async for chunk in paced_stream(Trickle([b"x"] * 100, 0.05), pace):  # type: ignore[arg-type]
            got.append(chunk)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3 and 0 < len(got) < 50  # not the 5 s the whole body takes
    assert exc.value.status == 408 and exc.value.headers == {"connection": "close"}


async def test_time_kaq_spends_on_what_it_has_read_is_not_the_clients() -> None:
    # Each chunk is quick to arrive; kaq then spends longer than the whole grace on it.
    pace = BodyPace(timeout=0.3, min_rate=1)
    got = []
    async for chunk in paced_stream(Trickle([b"y"] * 5, 0.01), pace):  # type: ignore[arg-type]
        got.append(chunk)
        await asyncio.sleep(0.2)
    assert got == [b"y"] * 5


async def test_bytes_received_buy_time_at_the_minimum_rate() -> None:
    # 10 KB at 1 KB per 0.1 s lasts 1 s: twice the grace, ten times the minimum rate.
    pace = BodyPace(timeout=0.5, min_rate=1000)
    chunks = [b"z" * 1000] * 10
    got = [c async for c in paced_stream(Trickle(chunks, 0.1), pace)]  # type: ignore[arg-type]
    assert got == chunks
