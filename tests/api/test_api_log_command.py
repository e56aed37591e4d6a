"""`kaq log export` and `kaq log prune` on a log the service wrote, on SQLite and
PostgreSQL: the export is the facts in the order decided, a corpus `kaq diff` replays;
prune removes by age; an incomplete export never looks complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO, running, settings_for

pytestmark = pytest.mark.anyio

KAQ = Path(sys.executable).parent / "kaq"
CORPUS = REPO / "corpus" / "accounts-2000.jsonl"


def kaq(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KAQ), *args],
        cwd=REPO,
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        **kw,
    )


async def _serve(tmp: Path, db_url: str, lines: list[str]) -> None:
    async with running(settings_for(tmp, db_url=db_url)) as r:
        answer = await r.client.post(
            "/v1/evaluate/batch?view=decision",
            content="\n".join(lines),
            headers={"content-type": "application/x-ndjson"},
        )
        assert answer.status_code == 200


async def test_export_is_the_logged_facts_in_order_and_a_corpus_for_diff(
    db_url: str, tmp_path: Path
) -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:300]
    await _serve(tmp_path, db_url, lines)
    out = tmp_path / "replay" / "yesterday.jsonl"
    today = datetime.now(UTC).date().isoformat()
    done = kaq("log", "export", "--since", today, "--out", str(out), env={"KAQ_DB_URL": db_url})
    assert done.returncode == 0, done.stderr
    assert f"exported 300 decision(s) since {today} 00:00:00 UTC to {out}" in done.stderr
    exported = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert exported == [json.loads(x) for x in lines]
    assert not list(out.parent.glob(".*.part"))  # nothing left beside it
    # to standard output, with --db, and a period that holds nothing
    stdout = kaq("log", "export", "--db", db_url)
    assert stdout.returncode == 0 and stdout.stdout == out.read_text(encoding="utf-8")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    empty = kaq("log", "export", "--db", db_url, "--since", tomorrow)
    assert empty.returncode == 0 and empty.stdout == "" and "exported 0 decision(s)" in empty.stderr
    # replayed against the very rulesets that decided them: nothing moves
    diff = kaq("diff", "rulesets", "rulesets", "--corpus", str(out), "--format", "json")
    assert diff.returncode == 0, diff.stderr
    report = json.loads(diff.stdout)
    assert report["accounts"] == 300
    assert report["changed"] == 0 and report["qualification_moved"] == 0


async def test_prune_removes_what_is_older_than_the_days_given(db_url: str, tmp_path: Path) -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:20]
    await _serve(tmp_path, db_url, lines)
    keep = kaq("log", "prune", "--older-than", "30", "--db", db_url)
    assert keep.returncode == 0, keep.stderr
    assert "removed 0 decision(s)" in keep.stdout and "20 remain" in keep.stdout
    gone = kaq("log", "prune", "--older-than", "0", "--db", db_url)
    assert gone.returncode == 0, gone.stderr
    assert "removed 20 decision(s)" in gone.stdout and "0 remain" in gone.stdout
    assert kaq("log", "export", "--db", db_url).stdout == ""


def test_usage_errors_say_what_to_write(tmp_path: Path) -> None:
    missing = kaq("log", "export", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2
    assert "there is no decision log at" in missing.stderr
    assert not (tmp_path / "none.db").exists()  # not created empty
    bad = kaq("log", "export", "--since", "last week", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert bad.returncode == 2 and "write it as 2026-11-30" in bad.stderr
    negative = kaq("log", "prune", "--older-than", "-1")
    assert negative.returncode == 2


async def test_an_export_that_cannot_be_written_whole_fails(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'kaq.db'}"
    await _serve(tmp_path, db_url, CORPUS.read_text(encoding="utf-8").splitlines()[:50])
    with open("/dev/full", "w") as full:
        done = kaq("log", "export", "--db", db_url, stdout=full)
    assert done.returncode == 1
    assert "the export is incomplete" in done.stderr
