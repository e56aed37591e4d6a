"""`kaq diff`: folders and git revisions, exact counts, formats and exit codes."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from engine import load_rulesets
from engine.tools.corpus import generate_accounts, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
RULESETS = ROOT / "rulesets"
runner = CliRunner()


def _raise_threshold(text: str, old: int = 70, new: int = 75) -> str:
    head, sep, tail = text.partition("  key_account_min_score:")
    assert sep, "the ruleset has no key_account_min_score param"
    return head + sep + tail.replace(f"value: {old}", f"value: {new}", 1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "accounts.jsonl"
    write_jsonl(generate_accounts(300, seed=11), path)
    return path


@pytest.fixture(scope="module")
def raised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raised")
    text = (RULESETS / "key-account.yaml").read_text(encoding="utf-8")
    (folder / "key-account.yaml").write_text(_raise_threshold(text), encoding="utf-8")
    return folder


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["diff", *args])
    return result.exit_code, result.output


def test_raised_threshold_reports_exactly_the_moved_accounts(corpus: Path, raised: Path) -> None:
    code, out = _run(str(RULESETS), str(raised), "--corpus", str(corpus), "--format", "json")
    assert code == 0, out
    report = json.loads(out)

    accounts = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    base_rs = load_rulesets(RULESETS)["key-account"]
    head_rs = load_rulesets(raised)["key-account"]
    expected: Counter[tuple[str, str]] = Counter()
    changed = []
    for a in accounts:
        b, h = base_rs.evaluate(a), head_rs.evaluate(a)
        expected[(b["qualification"], h["qualification"])] += 1
        if (b["qualification"], b["score"], b["guardrails"]) != (
            h["qualification"],
            h["score"],
            h["guardrails"],
        ):
            changed.append(a["account_id"])
    got = Counter(
        {(b, h): n for b, row in report["transitions"].items() for h, n in row.items() if n}
    )
    assert got == expected
    moved = sum(n for (b, h), n in expected.items() if b != h)
    assert moved > 0
    assert report["qualification_moved"] == moved
    assert [a["account_id"] for a in report["changed_accounts"]] == changed
    assert report["accounts"] == len(accounts)
    assert [p["name"] for p in report["changes"]["params_changed"]] == ["key_account_min_score"]
    assert report["elapsed_seconds"]["total"] > 0


def test_markdown_is_a_pr_comment_with_the_matrix(corpus: Path, raised: Path) -> None:
    code, out = _run(str(RULESETS), str(raised), "--corpus", str(corpus), "--format", "markdown")
    assert code == 0, out
    first = out.splitlines()[0]
    assert first.startswith("### ") and "change qualification" in first
    assert "| base \\ head | `key_account` | `potential_key_account` |" in out
    assert "<details><summary>Top 10 changed accounts</summary>" in out
    assert "key_account_min_score 70 → 75" in out
    assert "```diff" in out and "+  value: 75" in out


def test_text_format_prints_the_elapsed_time(corpus: Path, raised: Path) -> None:
    code, out = _run(str(RULESETS), str(raised), "--corpus", str(corpus), "--top", "3")
    assert code == 0, out
    assert "Qualification transitions" in out
    assert "Top 3 changed accounts" in out
    assert "elapsed: " in out.splitlines()[-1]


def test_fail_on_change_exits_1_only_when_a_verdict_changed(corpus: Path, raised: Path) -> None:
    base = str(RULESETS)
    code, _ = _run(base, str(raised), "--corpus", str(corpus), "--fail-on-change")
    assert code == 1
    code, out = _run(base, base, "--corpus", str(corpus), "--fail-on-change")
    assert code == 0
    assert "no verdict changes across 300 accounts" in out


def test_max_moved_exits_1_only_above_the_limit(corpus: Path, raised: Path) -> None:
    code, out = _run(str(RULESETS), str(raised), "--corpus", str(corpus), "--format", "json")
    moved = json.loads(out)["qualification_moved"]
    args = [str(RULESETS), str(raised), "--corpus", str(corpus)]
    assert _run(*args, "--max-moved", str(moved))[0] == 0
    assert _run(*args, "--max-moved", str(moved - 1))[0] == 1


def test_base_on_a_git_revision(tmp_path: Path, corpus: Path, monkeypatch, git) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    (repo / "rulesets").mkdir(parents=True)
    target = repo / "rulesets" / "key-account.yaml"
    shutil.copy(RULESETS / "key-account.yaml", target)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "policy as shipped")
    target.write_text(_raise_threshold(target.read_text(encoding="utf-8")), encoding="utf-8")
    git(repo, "commit", "-qam", "raise the key-account threshold")
    monkeypatch.chdir(repo)

    code, out = _run("--base", "HEAD~1", "HEAD", "--corpus", str(corpus), "--format", "json")
    assert code == 0, out
    by_revision = json.loads(out)
    assert by_revision["base"]["revision"] and by_revision["head"]["revision"]
    assert by_revision["qualification_moved"] > 0

    # The same with BASE HEAD positional, and against the working tree's folder.
    code, out = _run("HEAD~1", "rulesets", "--corpus", str(corpus), "--format", "json")
    assert code == 0, out
    by_folder = json.loads(out)
    assert by_folder["transitions"] == by_revision["transitions"]
    assert by_folder["changed_accounts"] == by_revision["changed_accounts"]


def test_bad_inputs_exit_2(tmp_path: Path, corpus: Path) -> None:
    code, out = _run(str(RULESETS), "no-such-revision", "--corpus", str(corpus))
    assert code == 2 and "neither a folder nor a git revision" in out
    code, out = _run(str(RULESETS), "--corpus", str(corpus))
    assert code == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"account_id": "A"}\nnot json\n')
    code, out = _run(str(RULESETS), str(RULESETS), "--corpus", str(bad))
    assert code == 2 and "bad.jsonl:2:" in out
