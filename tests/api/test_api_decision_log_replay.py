"""What the decision log gives back: the full verdict as it was answered, whatever view was
asked and whatever ruleset is served now; old rows after a migration; its size per decision
on the shipped corpus (api.md, Decision log)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import REPO, running, settings_for

from api.decision_log import MIGRATIONS, DecisionLog

pytestmark = pytest.mark.anyio

EXAMPLES = sorted((REPO / "examples").glob("*.json"))
CORPUS = REPO / "corpus" / "accounts-2000.jsonl"


def _facts() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES]


async def test_a_stored_decision_is_the_full_answer_whatever_view_was_asked(
    db_url: str, tmp_path: Path
) -> None:
    async with running(settings_for(tmp_path, db_url=db_url)) as r:
        for facts in _facts():
            full = (await r.client.post("/v1/evaluate", json=facts)).json()
            stored = (await r.client.get(f"/v1/decisions/{full['decision_id']}")).json()
            assert stored["verdict"] == full  # equal, field for field, to what was answered
            assert stored["view"] == "full" and stored["facts"] == facts
            assert "warning" not in stored
            for view in ("summary", "decision"):
                shown = (await r.client.post(f"/v1/evaluate?view={view}", json=facts)).json()
                assert shown["qualification"] == full["qualification"]
                assert len(shown) < len(full) or len(json.dumps(shown)) < len(json.dumps(full))
                got = (await r.client.get(f"/v1/decisions/{shown['decision_id']}")).json()
                assert got["view"] == view
                assert got["verdict"] == {**full, "decision_id": shown["decision_id"]}
        # and from a batch, in JSON and in NDJSON
        batch = await r.client.post("/v1/evaluate/batch?view=decision", json={"accounts": _facts()})
        lines = await r.client.post(
            "/v1/evaluate/batch?view=summary",
            content="\n".join(json.dumps(f) for f in _facts()),
            headers={"content-type": "application/x-ndjson"},
        )
        answered = batch.json()["results"] + [json.loads(x) for x in lines.text.splitlines()]
        for item, facts in zip(answered, _facts() * 2, strict=True):
            full = (await r.client.post("/v1/evaluate", json=facts)).json()
            got = (await r.client.get(f"/v1/decisions/{item['decision_id']}")).json()
            assert got["verdict"] == {**full, "decision_id": item["decision_id"]}


async def test_a_decision_reads_the_same_after_its_ruleset_changed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    facts = _facts()[0]
    async with running(settings) as r:
        before = (await r.client.post("/v1/evaluate", json=facts)).json()
    # A new policy: every threshold message and the key-account bar move.
    path = settings.rulesets / "key-account.yaml"
    text = path.read_text(encoding="utf-8")
    assert "version:" in text
    path.write_text(text.replace("version:", "version: changed-", 1), encoding="utf-8")
    async with running(settings) as r:
        served = (await r.client.get("/v1/rulesets/key-account")).json()
        assert served["digest"] != before["ruleset"]["digest"]
        stored = (await r.client.get(f"/v1/decisions/{before['decision_id']}")).json()
        assert stored["verdict"] == before  # decided by the ruleset of its time, from the log
        assert stored["ruleset"]["digest"] == before["ruleset"]["digest"]


async def test_decisions_logged_before_the_compact_log_stay_readable(tmp_path: Path) -> None:
    """A database of the schema before the compact log (whole verdicts in `decisions`) is
    migrated forward with its rows, which read back as they were stored."""
    db = tmp_path / "old.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for m in MIGRATIONS:
            if any("CREATE TABLE log (" in s for s in m.sqlite):
                break
            for statement in m.sqlite:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, 'x', 'then')", (m.version,))
        columns = [row[1] for row in conn.execute("PRAGMA table_info(decisions)")]
        old = {
            "decision_id": "01OLDROW0000000000000000000",
            "created_at": "2026-11-01T08:00:00.000000Z",
            "ruleset_name": "key-account",
            "ruleset_version": "2026.1",
            "ruleset_digest": "sha256:old",
            "account_id": "OLD-1",
            "qualification": "key_account",
            "score": 81,
            "facts": json.dumps({"account_id": "OLD-1", "annual_spend": 9}),
            "verdict": json.dumps({"decision_id": "01OLDROW0000000000000000000", "score": 81}),
            "duration_ms": 1.0,
        }
        row = {c: old.get(c) for c in columns}
        conn.execute(
            f"INSERT INTO decisions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    async with running(settings_for(tmp_path, db_url=f"sqlite:///{db}")) as r:
        got = (await r.client.get(f"/v1/decisions/{old['decision_id']}")).json()
        assert got["verdict"] == {"decision_id": old["decision_id"], "score": 81}
        assert got["facts"] == {"account_id": "OLD-1", "annual_spend": 9}
        assert got["account_id"] == "OLD-1"
        fresh = (await r.client.post("/v1/evaluate", json=_facts()[0])).json()
        again = (await r.client.get(f"/v1/decisions/{fresh['decision_id']}")).json()
        assert again["verdict"] == fresh


async def test_the_log_keeps_a_decision_in_under_2_5_kb_on_the_shipped_corpus(
    tmp_path: Path,
) -> None:
    """api.md: at most 2.5 KB per decision on average for the shipped corpus, measured as
    the growth of the SQLite file (rows, index and page slack) per decision logged."""
    db = tmp_path / "size.db"
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    async with running(settings_for(tmp_path, db_url=f"sqlite:///{db}")) as r:
        await r.client.post("/v1/evaluate", json=json.loads(lines[0]))  # rulesets stored
        log: DecisionLog = r.state.decision_log
        await log._call(lambda: log._backend._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        base = db.stat().st_size
        for start in range(0, len(lines), 500):
            body = "\n".join(lines[start : start + 500])
            answer = await r.client.post(
                "/v1/evaluate/batch", content=body, headers={"content-type": "application/x-ndjson"}
            )
            assert answer.status_code == 200
        await log._call(lambda: log._backend._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        n = await log._call(log._backend.count)
    per_decision = (db.stat().st_size - base) / len(lines)
    assert n == len(lines) + 1
    assert per_decision <= 2560, f"{per_decision:.0f} bytes per decision"
    print(f"decision log: {per_decision:.0f} bytes per decision over {len(lines)} decisions")


async def test_the_server_prunes_by_age_with_a_retention_setting(
    db_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from api.decision_log import Entry, facts_json
    from api.ids import new_decision_id

    def entry(age_days: float) -> Entry:
        return Entry(
            decision_id=new_decision_id(),
            ruleset_digest="sha256:00",
            account_id="A",
            qualification="key_account",
            score=80,
            view="full",
            duration_ms=1.0,
            kaq_version="test",
            facts=facts_json({"account_id": "A"}),
            created_at=datetime.now(UTC) - timedelta(days=age_days),
        )

    old, recent = entry(40), entry(2)
    log = DecisionLog(db_url)
    await log.open()
    await log.write([old, recent])
    await log.close()
    async with running(settings_for(tmp_path, db_url=db_url, log_retention_days=30)) as r:
        for _ in range(100):  # the retention task runs at start, beside the first requests
            if (await r.client.get(f"/v1/decisions/{old.decision_id}")).status_code == 404:
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert (await r.client.get(f"/v1/decisions/{old.decision_id}")).status_code == 404
        kept = await r.client.get(f"/v1/decisions/{recent.decision_id}")
        assert kept.status_code == 200  # still there; its ruleset was never stored here
        record = kept.json()
        assert record["verdict"] is None and record["facts"] == {"account_id": "A"}
        assert "sha256:00 is not in the decision log" in record["warning"]
        assert "(key_account, 80 points) are as logged" in record["warning"]


async def test_rows_whose_facts_are_zlib_streams_read_back_beside_zstandard_ones(
    tmp_path: Path,
) -> None:
    """The log compresses facts with Zstandard; rows written before it hold zlib streams
    (level 6). Both kinds read back through GET /v1/decisions."""
    import zlib

    import orjson

    from api.decision_log.records import ZSTD_MAGIC

    db = tmp_path / "mixed.db"
    facts = _facts()
    async with running(settings_for(tmp_path, db_url=f"sqlite:///{db}")) as r:
        answers = [(await r.client.post("/v1/evaluate", json=f)).json() for f in facts[:2]]
        log: DecisionLog = r.state.decision_log
        conn = log._backend._conn
        stored = await log._call(
            lambda: conn.execute("SELECT decision_id, facts FROM log").fetchall()
        )
        assert all(bytes(blob)[:4] == ZSTD_MAGIC for _id, blob in stored)
        old_id = answers[0]["decision_id"]
        await log._call(
            lambda: conn.execute(
                "UPDATE log SET facts = ? WHERE decision_id = ?",
                (zlib.compress(orjson.dumps(facts[0]), 6), old_id),
            )
        )
        await log._call(conn.commit)
        for answer, f in zip(answers, facts[:2], strict=True):
            got = (await r.client.get(f"/v1/decisions/{answer['decision_id']}")).json()
            assert got["facts"] == f
            assert got["verdict"] == answer
