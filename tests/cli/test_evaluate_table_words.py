"""`kaq evaluate --lang zh|en`: the salesperson's table, Chinese throughout or English
without codes; summary, next actions and what it would take first."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
HOSPITAL = ROOT / "examples" / "provincial-hospital.json"


def table(file: Path, lang: str) -> str:
    # a wide terminal, whatever the one running the tests: at 80 columns rich wraps the
    # phrases these tests look for across two lines
    r = CliRunner(env={"COLUMNS": "160"}).invoke(
        app, ["evaluate", str(file), "--lang", lang, "--rulesets", str(ROOT / "rulesets")]
    )
    assert r.exit_code == 0, r.output
    return r.stdout


def _undecided(tmp_path: Path) -> Path:
    for line in (ROOT / "corpus" / "accounts-2000.jsonl").read_text(encoding="utf-8").splitlines():
        facts = json.loads(line)
        if facts["account_id"] == "ACC-000101":  # insufficient data, two facts decide it
            path = tmp_path / "a.json"
            path.write_text(json.dumps(facts, ensure_ascii=False), encoding="utf-8")
            return path
    raise AssertionError("ACC-000101 is not in the corpus")


def test_the_chinese_table_is_chinese_throughout(tmp_path) -> None:
    out = table(HOSPITAL, "zh") + table(_undecided(tmp_path), "zh")
    for word in ("结论", "得分", "下一步", "怎样才能更进一步", "评估指标", "发现的问题", "预警"):
        assert word in out
    assert "（其中决定结论的：预计持续采购年数、采购方式）" in out
    # no English words or codes outside the account ids (CRM-HOSP-0107, ACC-000101)
    words = set(re.findall(r"[A-Za-z_]{3,}", out)) - {"CRM", "HOSP", "ACC"}
    assert not words, words
    # an arrow, a bullet: never alone on their line before Chinese text
    assert not re.search(r"[→•]\s*│", out)


def test_the_english_table_has_no_snake_case_and_leads_with_the_advice() -> None:
    out = table(HOSPITAL, "en")
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", out)
    order = [out.index(w) for w in ("Why", "Next actions", "What it would take", "Criteria")]
    assert order == sorted(order)
    assert "Points" in out  # the criteria's header, capitalized like the others


def test_the_table_shows_volumes_and_counts_with_their_unit_words() -> None:
    retail = ROOT / "examples" / "retail-chain-after-big-contract.json"
    wide = {"COLUMNS": "400"}  # one finding a line: the words are not folded apart
    zh = CliRunner(env=wide).invoke(
        app, ["evaluate", str(retail), "--lang", "zh", "--rulesets", str(ROOT / "rulesets")]
    )
    en = CliRunner(env=wide).invoke(
        app, ["evaluate", str(retail), "--lang", "en", "--rulesets", str(ROOT / "rulesets")]
    )
    assert zh.exit_code == 0 and en.exit_code == 0, zh.output + en.output
    assert "合同销量50万套，签约前全年销量60万套" in zh.stdout
    assert "volume 500,000 units, against 600,000 units" in en.stdout
    assert "每年只会面1次" in zh.stdout and "1次次" not in zh.stdout
    hospital = CliRunner(env=wide).invoke(
        app, ["evaluate", str(HOSPITAL), "--lang", "zh", "--rulesets", str(ROOT / "rulesets")]
    )
    assert "同行业样板客户从0家增加到1家" in hospital.stdout
