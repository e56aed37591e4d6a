"""`kaq evaluate`: .json, .jsonl and .csv input, `--format json`, exit 2 naming record and field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "fixtures" / "rulesets" / "mini.yaml"

GOOD = {
    "account_id": "M-1",
    "kind": "company",
    "spend": 2000000,
    "years": 3,
    "cost": 100000,
    "margin_pct": 3,
    "active": True,
    "tags": ["a", "b", "c"],
}
SMALL = {"account_id": "M-2", "kind": "ngo", "spend": 10, "active": False}


@pytest.fixture
def rulesets(tmp_path):
    folder = tmp_path / "rulesets"
    folder.mkdir()
    shutil.copy(MINI, folder / "mini.yaml")
    return folder


def kaq_evaluate(rulesets: Path, file: Path, *args: str):
    argv = ["evaluate", str(file), "--ruleset", "mini", "--rulesets", str(rulesets), *args]
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, argv)


def test_json_object_gives_one_verdict(rulesets, tmp_path):
    f = tmp_path / "one.json"
    f.write_text(json.dumps(GOOD), encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["account_id"] == "M-1" and verdict["qualification"] == "good"


def test_json_list_and_accounts_wrapper_give_a_list(rulesets, tmp_path):
    for payload in ([GOOD, SMALL], {"accounts": [GOOD, SMALL]}):
        f = tmp_path / "many.json"
        f.write_text(json.dumps(payload), encoding="utf-8")
        result = kaq_evaluate(rulesets, f, "--format", "json")
        assert result.exit_code == 0, result.output
        verdicts = json.loads(result.stdout)
        assert [(v["account_id"], v["qualification"]) for v in verdicts] == [
            ("M-1", "good"),
            ("M-2", "poor"),
        ]


def test_jsonl_gives_a_list_in_order(rulesets, tmp_path):
    f = tmp_path / "accounts.jsonl"
    f.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(SMALL) + "\n", encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [v["account_id"] for v in json.loads(result.stdout)] == ["M-1", "M-2"]


def test_csv_cells_are_typed_by_the_ruleset(rulesets, tmp_path):
    f = tmp_path / "accounts.csv"
    f.write_text(
        "account_id,kind,spend,years,cost,margin_pct,active,tags\n"
        'M-1,company,"2,000,000",3,100000,3,yes,a;b;c\n'
        "M-2,ngo,10,,,,false,\n",
        encoding="utf-8",
    )
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.stdout)
    by_json = json.loads(kaq_evaluate_json(rulesets, tmp_path, [GOOD, SMALL]))
    assert [v["qualification"] for v in verdicts] == [v["qualification"] for v in by_json]
    assert verdicts[0]["score"] == by_json[0]["score"] == 100
    assert verdicts[1]["missing_facts"] == by_json[1]["missing_facts"]


def kaq_evaluate_json(rulesets: Path, tmp_path: Path, accounts: list) -> str:
    f = tmp_path / "ref.json"
    f.write_text(json.dumps(accounts), encoding="utf-8")
    return kaq_evaluate(rulesets, f, "--format", "json").stdout


def test_table_format_shows_each_account(rulesets, tmp_path):
    f = tmp_path / "many.json"
    f.write_text(json.dumps([GOOD, SMALL]), encoding="utf-8")
    result = kaq_evaluate(rulesets, f)
    assert result.exit_code == 0, result.output
    assert "M-1" in result.stdout and "M-2" in result.stdout and "good" in result.stdout


def test_bad_record_exits_2_naming_the_record_and_the_field(rulesets, tmp_path):
    f = tmp_path / "accounts.jsonl"
    bad = {**SMALL, "account_id": "BAD-7", "spend": "5000"}
    f.write_text("\n".join(json.dumps(x) for x in (GOOD, bad, SMALL)) + "\n", encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 2
    assert [v["account_id"] for v in json.loads(result.stdout)] == ["M-1", "M-2"]
    assert f"{f}:2" in result.stderr and "BAD-7" in result.stderr
    assert "field `spend`" in result.stderr


def test_unknown_field_exits_2_naming_it(rulesets, tmp_path):
    f = tmp_path / "one.json"
    f.write_text(json.dumps([GOOD, {**GOOD, "anual_spend": 1}]), encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 2
    assert f"{f}[1]" in result.stderr and "field `anual_spend`" in result.stderr


def test_bad_csv_cell_exits_2_naming_line_and_field(rulesets, tmp_path):
    f = tmp_path / "accounts.csv"
    f.write_text("account_id,years\nM-1,3\nM-2,three\n", encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 2
    assert f"{f}:3" in result.stderr and "field `years`" in result.stderr


def test_unknown_csv_column_exits_2(rulesets, tmp_path):
    f = tmp_path / "accounts.csv"
    f.write_text("account_id,spnd\nM-1,3\n", encoding="utf-8")
    result = kaq_evaluate(rulesets, f)
    assert result.exit_code == 2 and "spnd" in result.stderr


@pytest.mark.parametrize(
    ("name", "content"),
    [("bad.json", "{not json"), ("nan.json", '{"account_id": "A", "spend": NaN}'), ("x.txt", "{}")],
)
def test_unreadable_input_exits_2(rulesets, tmp_path, name, content):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    assert kaq_evaluate(rulesets, f).exit_code == 2


def test_missing_file_unknown_ruleset_and_bad_format_exit_2(rulesets, tmp_path):
    assert kaq_evaluate(rulesets, tmp_path / "none.json").exit_code == 2
    f = tmp_path / "one.json"
    f.write_text(json.dumps(GOOD), encoding="utf-8")
    assert kaq_evaluate(rulesets, f, "--format", "xml").exit_code == 2
    argv = ["evaluate", str(f), "--ruleset", "nope", "--rulesets", str(rulesets)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "mini" in result.stderr


def test_installed_kaq_script_evaluates_json(rulesets, tmp_path):
    kaq = Path(sys.executable).parent / "kaq"
    if not kaq.exists():
        kaq = ROOT / ".venv" / "bin" / "kaq"
    f = tmp_path / "one.json"
    f.write_text(json.dumps(GOOD), encoding="utf-8")
    argv = [str(kaq), "evaluate", str(f), "--ruleset", "mini", "--rulesets", str(rulesets)]
    proc = subprocess.run([*argv, "--format", "json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["qualification"] == "good"


def test_unknown_field_gets_a_did_you_mean(rulesets, tmp_path):
    f = tmp_path / "one.json"
    f.write_text(json.dumps({**GOOD, "spnd": 1}), encoding="utf-8")
    result = kaq_evaluate(rulesets, f)
    assert result.exit_code == 2
    assert "unknown fact `spnd`; did you mean `spend`?" in result.stderr


def test_csv_with_an_unknown_column_is_rejected_whole_with_a_hint(rulesets, tmp_path):
    f = tmp_path / "accounts.csv"
    f.write_text("account_id,Spend\nM-1,3\nM-2,4\nM-3,5\n", encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{f}:1: unknown column(s): `Spend` (did you mean `spend`?)" in result.stderr
    assert "the file was not evaluated" in result.stderr
    assert "record(s) rejected" not in result.stderr


def test_an_engine_failure_is_an_internal_error_not_a_rejected_record(
    rulesets, tmp_path, monkeypatch
):
    from engine.runtime import _durable

    def refuse(handle, text):
        raise _durable._dre.error("Could not assert fact, error code: 303")

    monkeypatch.setattr(_durable._dre, "assert_fact", refuse)
    f = tmp_path / "one.json"
    f.write_text(json.dumps(GOOD), encoding="utf-8")
    result = kaq_evaluate(rulesets, f, "--format", "json")
    assert result.exit_code == 1
    assert "internal error" in result.stderr and "not of the input" in result.stderr
    assert "rejected" not in result.stderr


def _kaq_in(cwd: Path, *args: str, env: dict[str, str] | None = None):
    import os

    full = {k: v for k, v in os.environ.items() if k != "KAQ_RULESETS"}
    full.update(env or {})
    kaq = Path(sys.executable).parent / "kaq"
    return subprocess.run(
        [str(kaq), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )


def test_evaluate_works_outside_the_checkout_with_the_shipped_ruleset(tmp_path):
    shutil.copy(ROOT / "examples" / "state-bank-head-office.json", tmp_path / "a.json")
    out = _kaq_in(tmp_path, "evaluate", "a.json", "--format", "json")
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["ruleset"]["name"] == "key-account"
    assert verdict["qualification"] == "key_account"


def test_evaluate_honours_kaq_rulesets(tmp_path):
    folder = tmp_path / "policy"
    folder.mkdir()
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    old = "  key_account_min_score:\n    value: 70\n"
    assert old in text
    (folder / "key-account.yaml").write_text(
        text.replace(old, "  key_account_min_score:\n    value: 101\n"), encoding="utf-8"
    )
    shutil.copy(ROOT / "examples" / "state-bank-head-office.json", tmp_path / "a.json")
    out = _kaq_in(
        tmp_path, "evaluate", "a.json", "--format", "json", env={"KAQ_RULESETS": str(folder)}
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["qualification"] == "potential_key_account"  # 100 < 101


def test_a_missing_rulesets_folder_says_how_to_name_one(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(GOOD), encoding="utf-8")
    out = _kaq_in(tmp_path, "evaluate", "a.json", env={"KAQ_RULESETS": str(tmp_path / "nope")})
    assert out.returncode == 2
    assert "rulesets folder" in out.stderr and "not found" in out.stderr
    assert "set --rulesets or KAQ_RULESETS" in out.stderr
