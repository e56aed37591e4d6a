"""100,000 NDJSON lines stream through with bounded memory.

The app is driven directly over ASGI: the request body is generated on demand
and the response is counted and dropped, so any growth is the server's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import copy_rulesets

from api.app import create_app
from api.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.serial]  # serial: see pyproject.toml

LINES = 100_000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.once
async def test_ndjson_100k_lines_with_bounded_memory(tmp_path: Path) -> None:
    settings = Settings(
        rulesets=copy_rulesets(tmp_path / "rs", tiny=True),
        db_url=f"sqlite:///{tmp_path / 'log.db'}",
        default_ruleset="tiny",
        log_chunk_size=500,
    )
    app = create_app(settings)
    line = json.dumps({"account_id": "M-{}", "annual_spend": 1, "product_fit": "strong"})
    per_chunk = 200

    async def receive():
        nonlocal sent
        if sent >= LINES:
            return {"type": "http.request", "body": b"", "more_body": False}
        n = min(per_chunk, LINES - sent)
        body = "".join(line.replace("{}", str(sent + i)) + "\n" for i in range(n)).encode()
        sent += n
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message):
        nonlocal received, status, baseline, peak
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            received += message["body"].count(b"\n")
            if baseline is None and received >= 10_000:
                baseline = rss()
            if baseline is not None:
                peak = max(peak, rss())

    sent = received = status = 0
    baseline: int | None = None
    peak = 0
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/evaluate/batch",
        "raw_path": b"/v1/evaluate/batch",
        "query_string": b"",
        "root_path": "",
        "server": ("kaq", 80),
        "client": ("test", 1),
        "headers": [(b"content-type", b"application/x-ndjson"), (b"host", b"kaq")],
    }
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
        assert await app.state.kaq.decision_log.schema_version() >= 1
    elapsed = time.perf_counter() - started

    assert status == 200
    assert received == LINES
    assert baseline is not None
    growth_mb = (peak - baseline) / 2**20
    print(f"\n100k NDJSON lines in {elapsed:.1f}s; RSS growth after 10k lines: {growth_mb:.1f} MB")
    # Holding the answers would take ~180 MB (1.8 kB each); the stream must not.
    assert growth_mb < 40

    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(tmp_path / "log.db")) as conn:  # `with conn` does not close
        assert conn.execute("SELECT COUNT(*) FROM log").fetchone()[0] == LINES
