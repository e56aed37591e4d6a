"""`kaq spark-evaluate` on local[2] decides as `kaq evaluate` does, row for row.

The shared `spark` session (tests/conftest.py) is the active one, so the command, run
in-process, uses it instead of starting a JVM of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from engine.spark import DECISION_FIELDS

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

ROOT = Path(__file__).resolve().parents[2]
RULESETS = ROOT / "rulesets"
KAQ = str(Path(sys.executable).parent / "kaq")
N = 5000
SEED = 1414


def kaq_spark(*args: str):
    return CliRunner().invoke(app, ["spark-evaluate", *args, "--rulesets", str(RULESETS)])


def decision_of(verdict: dict[str, Any]) -> dict[str, Any]:
    """The decision fields of a full verdict (api.md, Views), to compare with Spark's row."""
    outcomes = {t["rule"]: t["outcome"] for t in verdict["trace"]}
    outcomes.update({c["rule"]: c["outcome"] for c in verdict["criteria"]})
    return {
        "account_id": verdict["account_id"],
        "ruleset": verdict["ruleset"],
        "qualification": verdict["qualification"],
        "score": verdict["score"],
        "segments": verdict["segments"],
        "stage": verdict["stage"],
        "missing_facts": verdict["missing_facts"],
        "outcomes": outcomes,
        "points": {c["rule"]: c["points"] for c in verdict["criteria"]},
        "severities": {g["rule"]: g["severity"] for g in verdict["guardrails"]},
        "scopes": {g["rule"]: g["scope"] for g in verdict["guardrails"]},
    }


def decision_of_row(row: Any) -> dict[str, Any]:
    d = row.asDict(recursive=True)
    return {k: d[k] for k in DECISION_FIELDS}


def read_parts(folder: Path) -> list[dict[str, Any]]:
    """The rows of a JSON output folder, in part order (= input order)."""
    rows = []
    for part in sorted(folder.glob("part-*")):
        rows.extend(json.loads(line) for line in part.read_text(encoding="utf-8").splitlines())
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """5,000 generated accounts and `kaq evaluate`'s full verdicts of them."""
    tmp = tmp_path_factory.mktemp("spark-corpus")
    accounts = tmp / "accounts.jsonl"
    subprocess.run(
        [KAQ, "corpus", "generate", "--n", str(N), "--seed", str(SEED), "--out", str(accounts)],
        check=True,
        capture_output=True,
    )
    verdicts = tmp / "verdicts.json"
    with verdicts.open("wb") as out:
        subprocess.run(
            [KAQ, "evaluate", str(accounts), "--format", "json", "--rulesets", str(RULESETS)],
            check=True,
            stdout=out,
        )
    return accounts, json.loads(verdicts.read_text(encoding="utf-8"))


@pytest.mark.once
def test_spark_decides_5000_accounts_as_kaq_evaluate_does(spark, corpus, tmp_path):
    accounts, verdicts = corpus
    out = tmp_path / "decisions.parquet"
    result = kaq_spark(str(accounts), str(out))
    assert result.exit_code == 0, result.output
    assert f"{N} accounts: {N} decided, 0 not decided" in result.stderr
    rows = spark.read.parquet(str(out)).orderBy("input_row").collect()
    assert [r["input_row"] for r in rows] == list(range(1, N + 1))
    assert all(r["error"] is None for r in rows)
    assert "verdict" not in rows[0].asDict()  # the decision view builds no text
    assert len(verdicts) == N
    differ = [
        (v["account_id"], decision_of(v), decision_of_row(r))
        for v, r in zip(verdicts, rows, strict=True)
        if decision_of(v) != decision_of_row(r)
    ]
    assert differ == []
    # not a vacuous comparison: the corpus reaches every qualification
    assert {r["qualification"] for r in rows} == {
        "key_account",
        "potential_key_account",
        "not_key_account",
        "insufficient_data",
    }


def test_spark_full_verdicts_equal_kaq_evaluate_on_a_sample(corpus, tmp_path):
    accounts, verdicts = corpus
    lines = accounts.read_text(encoding="utf-8").splitlines()
    picked = list(range(0, N, 37))  # 136 accounts across the whole file
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(lines[i] + "\n" for i in picked), encoding="utf-8")
    out = tmp_path / "full.jsonl"
    result = kaq_spark(str(sample), str(out), "--view", "full")
    assert result.exit_code == 0, result.output
    rows = read_parts(out)
    assert [r["input_row"] for r in rows] == list(range(1, len(picked) + 1))
    for i, row in zip(picked, rows, strict=True):
        assert json.loads(row["verdict"]) == verdicts[i], verdicts[i]["account_id"]


@pytest.mark.once
def test_bad_rows_are_kept_with_an_error_and_counted(tmp_path):
    good = {"account_id": "OK-1", "product_fit": "strong"}
    source = tmp_path / "mixed.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                "",  # a blank line is no account, as in `kaq evaluate`
                "[1, 2]",
                json.dumps({"account_id": "BAD-1", "anual_spend": 5}),
                json.dumps({"account_id": "BAD-2", "annual_spend": "lots"}),
                '{"account_id": "BAD-3", "annual_spend": NaN}',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "mixed-out.jsonl"
    result = kaq_spark(str(source), str(out))
    assert result.exit_code == 0, result.output
    assert "6 accounts: 1 decided, 5 not decided" in result.stderr
    assert "facts.invalid: 2" in result.stderr and "facts.unreadable: 3" in result.stderr
    rows = {r["input_row"]: r for r in read_parts(out)}
    assert sorted(rows) == [1, 2, 4, 5, 6, 7]
    assert rows[1]["qualification"] and "error" not in rows[1]
    codes = {n: json.loads(r["error"])["code"] for n, r in rows.items() if "error" in r}
    assert codes == {
        2: "facts.unreadable",
        4: "facts.unreadable",
        5: "facts.invalid",
        6: "facts.invalid",
        7: "facts.unreadable",
    }
    unknown = json.loads(rows[5]["error"])
    assert rows[5]["account_id"] == "BAD-1"
    assert unknown["errors"][0]["loc"] == ["anual_spend"]
    assert "annual_spend" in unknown["errors"][0]["msg"]  # the did-you-mean hint travels


@pytest.mark.once
def test_parquet_input_keeps_its_rows_in_order(spark, corpus, tmp_path):
    accounts, verdicts = corpus
    first = accounts.read_text(encoding="utf-8").splitlines()[:300]
    facts_in = tmp_path / "in.parquet"
    # columns typed by Spark's JSON inference, nulls where a fact is missing
    spark.read.json(spark.sparkContext.parallelize(first, 1)).write.parquet(str(facts_in))
    out = tmp_path / "out.parquet"
    result = kaq_spark(str(facts_in), str(out), "--partitions", "3")
    assert result.exit_code == 0, result.output
    rows = spark.read.parquet(str(out)).orderBy("input_row").collect()
    assert [r["input_row"] for r in rows] == list(range(1, 301))
    for v, r in zip(verdicts[:300], rows, strict=True):
        assert decision_of_row(r) == decision_of(v)


@pytest.mark.once
def test_an_existing_output_is_refused_unless_overwrite(corpus, tmp_path):
    accounts, _ = corpus
    out = tmp_path / "exists.jsonl"
    out.mkdir()
    (out / "keep-me").write_text("x", encoding="utf-8")
    small = tmp_path / "small.jsonl"
    small.write_text(accounts.read_text(encoding="utf-8").splitlines()[0] + "\n", "utf-8")
    result = kaq_spark(str(small), str(out))
    assert result.exit_code == 2
    assert "--overwrite" in result.stderr
    assert (out / "keep-me").exists()
    result = kaq_spark(str(small), str(out), "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(read_parts(out)) == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["in.csv", "out.jsonl"], "INPUT"),
        (["in.jsonl", "out.txt"], "OUTPUT"),
        (["in.jsonl", "out.jsonl", "--view", "everything"], "--view"),
        (["in.jsonl", "out.jsonl", "--ruleset", "nope"], "no ruleset named `nope`"),
    ],
)
def test_usage_errors_exit_2_before_spark_starts(args, said):
    result = kaq_spark(*args)
    assert result.exit_code == 2
    assert said in result.stderr


def test_a_broken_ruleset_exits_2_with_its_diagnostics(tmp_path):
    broken = tmp_path / "rulesets"
    broken.mkdir()
    (broken / "key-account.yaml").write_text("name: key-account\nrules: [\n", "utf-8")
    result = CliRunner().invoke(
        app, ["spark-evaluate", "a.jsonl", "b.jsonl", "--rulesets", str(broken)]
    )
    assert result.exit_code == 2
    assert "key-account.yaml:" in result.stderr
