"""`kaq portfolio FILE`: table, JSON and Markdown; bad input exits 2 naming record and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
RULESETS = ROOT / "rulesets"
CORPUS = ROOT / "corpus" / "accounts-2000.jsonl"


def kaq(*args: str):
    # a wide terminal, whatever the one running the tests: these tests read words, and at
    # 80 columns rich wraps a long account name across two lines
    return CliRunner(env={"COLUMNS": "160"}).invoke(
        app, ["portfolio", *args, "--rulesets", str(RULESETS)]
    )


@pytest.fixture(scope="module")
def corpus_json():
    r = kaq(str(CORPUS), "--format", "json", "--smb-dropped", "12")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_json_is_the_endpoints_answer_without_the_verdicts(corpus_json) -> None:
    out = corpus_json
    assert set(out) == {
        "findings",
        "counts",
        "totals",
        "top_accounts",
        "largest_account",
        "metrics",
    }
    assert out["totals"]["accounts"] == 2000 == sum(out["counts"]["qualification"].values())
    assert len(out["top_accounts"]) == out["metrics"]["top_count"] == 349  # ceil(0.2 × 1,745)
    rules = {f["rule"] for f in out["findings"]}
    assert {"portfolio.pareto", "portfolio.unqualified_top_profit"} <= rules
    # --smb-dropped is the ruleset's `smb_dropped` input
    assert out["metrics"]["smb_accounts_dropped_pct"] == 12
    assert "portfolio.small_customer_neglect" in rules


def test_the_table_names_accounts_in_either_language(corpus_json) -> None:
    first = corpus_json["top_accounts"][0]
    for lang, words in (
        ("en", ["By qualification", "Share of revenue"]),
        ("zh", ["按结论", "收入占比"]),
    ):
        r = kaq(str(CORPUS), "--lang", lang)
        assert r.exit_code == 0, r.output
        assert all(w in r.stdout for w in words)
        assert first["account_id"] in r.stdout and first["account_name"] in r.stdout
    assert "not_key_account" not in r.stdout and "insufficient_data" not in r.stdout


def test_markdown_is_tables_a_director_can_paste(corpus_json) -> None:
    r = kaq(str(CORPUS), "--format", "markdown", "--lang", "zh")
    assert r.exit_code == 0, r.output
    md = r.stdout
    assert md.startswith("## 客户组合：") or md.startswith("## 客户组合: ")
    assert "| 结论 | 客户数 | 收入 |" in md
    assert "| 全部客户 | 2,000 |" in md
    assert corpus_json["largest_account"]["account_id"] in md


def test_bad_records_exit_2_naming_record_and_field_and_no_portfolio(tmp_path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text(
        '{"account_id": "A", "annual_spend": 5}\n{"account_id": "B", "annual_spend": -1}\n',
        encoding="utf-8",
    )
    r = kaq(str(f), "--format", "json")
    assert r.exit_code == 2
    assert "a.jsonl:2" in r.stderr and "annual_spend" in r.stderr
    assert "the portfolio was not computed" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--smb-dropped", "120"], "--smb-dropped: must be between 0 and 100"),
        (["--format", "xml"], "--format must be one of table, json, markdown"),
        (["--lang", "fr"], "--lang must be en or zh"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args, says) -> None:
    r = kaq(str(ROOT / "examples" / "accounts.jsonl"), *args)
    assert r.exit_code == 2
    assert says in r.stderr


def test_an_empty_portfolio_says_so_instead_of_empty_tables(tmp_path) -> None:
    f = tmp_path / "none.json"
    f.write_text("[]", encoding="utf-8")
    r = kaq(str(f), "--format", "markdown", "--lang", "zh")
    assert r.exit_code == 0, r.output
    assert "## 客户组合：0个客户" in r.stdout
    assert "没有：各项组合指标都在规则的范围内。" in r.stdout
    assert "| 级别 | 问题与对策 |" not in r.stdout
    out = json.loads(kaq(str(f), "--format", "json").stdout)
    assert out["top_accounts"] == [] and out["largest_account"] is None
    assert out["totals"]["accounts"] == 0
