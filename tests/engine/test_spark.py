"""engine.spark: the ruleset travels as text with its digest, is prepared once per worker
process, and every row comes back (decided, or with an error); pyspark is imported lazily."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.errors import DigestMismatch, RulesetError
from engine.spark import PartitionEvaluator, error_counts, evaluate, prepared, ship

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

ROOT = Path(__file__).resolve().parents[2]
RULESETS = ROOT / "rulesets"
ACCOUNT = {
    "account_id": "T-1",
    "product_fit": "strong",
    "purchasing_model": "centralized",
    "purchase_pattern": "recurring",
    "annual_spend": 12000000,
    "gross_margin_pct": 20,
}


def test_import_engine_needs_no_pyspark():
    code = (
        "import sys; sys.modules['pyspark'] = None\n"  # any import of pyspark now fails
        "import engine, engine.spark\n"
        "s = engine.spark.ship(sys.argv[1], 'key-account')\n"
        "print(s.digest)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(RULESETS)], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("sha256:")
    plain = subprocess.run(
        [sys.executable, "-c", "import engine, sys; print('engine.spark' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert plain.stdout.strip() == "False"


def test_ship_validates_on_the_driver_and_picks_the_ruleset_by_name():
    shipped = ship(RULESETS, "key-account")
    text = (RULESETS / "key-account.yaml").read_text(encoding="utf-8")
    assert shipped.text == text and shipped.digest == engine.source_digest(text)
    assert ship({"any-name.yaml": text}, "key-account").digest == shipped.digest
    with pytest.raises(ValueError, match="no ruleset named `nope`"):
        ship(RULESETS, "nope")
    with pytest.raises(RulesetError):
        ship({"k.yaml": "name: key-account\nrules: [\n"}, "key-account")


def test_an_executor_refuses_text_that_does_not_hash_to_its_digest():
    shipped = ship(RULESETS, "key-account")
    tampered = dataclasses.replace(shipped, text=shipped.text.replace("70", "60", 1))
    assert tampered.text != shipped.text
    fn = PartitionEvaluator(tampered, "decision", ("value",), (), "value")
    with pytest.raises(DigestMismatch, match="refusing to evaluate"):
        list(fn([(json.dumps(ACCOUNT),)]))
    # and the genuine text decides
    (row,) = PartitionEvaluator(shipped, "decision", ("value",), (), "value")(
        [(json.dumps(ACCOUNT),)]
    )
    assert row[0] == "T-1" and row[-1] is None


def test_a_digest_mismatch_fails_the_spark_job(spark):
    shipped = ship(RULESETS, "key-account")
    tampered = dataclasses.replace(shipped, digest="sha256:" + "0" * 64)
    fn = PartitionEvaluator(tampered, "decision", ("value",), (), "value")
    rdd = spark.sparkContext.parallelize([(json.dumps(ACCOUNT),)], 1).mapPartitions(fn)
    with pytest.raises(Exception, match="DigestMismatch") as caught:
        rdd.collect()
    assert "refusing to evaluate" in str(caught.value)


def test_each_worker_process_prepares_the_ruleset_once(spark):
    shipped = ship(RULESETS, "key-account")

    def probe(rows):
        import os

        first = prepared(shipped)
        list(rows)
        yield os.getpid(), id(first), id(prepared(shipped))

    seen = spark.sparkContext.parallelize(range(64), 16).mapPartitions(probe).collect()
    assert len(seen) == 16
    by_pid: dict[int, set[int]] = {}
    for pid, a, b in seen:
        assert a == b
        by_pid.setdefault(pid, set()).add(a)
    # 16 tasks on local[2]: the workers are reused, and each keeps one prepared ruleset
    assert len(by_pid) < 16
    assert all(len(ids) == 1 for ids in by_pid.values())


def test_typed_columns_decide_like_the_json_text(spark):
    rs = engine.load_rulesets(RULESETS)["key-account"]
    try:
        accounts = [
            ACCOUNT,
            {"account_id": "T-2", "product_fit": "none"},
            {
                "account_id": "T-3",
                "annual_spend": 900000,
                "support_activities": ["sales_training", "regular_contact"],
            },
        ]
        expected = [rs.decide(a).to_dict() for a in accounts]
    finally:
        rs.close()
    lines = [json.dumps(a) for a in accounts]
    typed = spark.read.json(spark.sparkContext.parallelize(lines, 2))  # nulls where missing
    out = evaluate(typed, RULESETS).collect()
    assert [r["error"] for r in out] == [None, None, None]
    for row, want in zip(out, expected, strict=True):
        got = {k: row.asDict(recursive=True)[k] for k in want}
        assert got == want


def test_views_add_the_verdict_as_json(spark):
    df = spark.createDataFrame([(json.dumps(ACCOUNT),)], "value string")
    (decision,) = evaluate(df, RULESETS, json_column="value").collect()
    assert "verdict" not in decision.asDict()
    (full,) = evaluate(df, RULESETS, view="full", json_column="value").collect()
    (summary,) = evaluate(df, RULESETS, view="summary", json_column="value").collect()
    verdict, short = json.loads(full["verdict"]), json.loads(summary["verdict"])
    assert verdict["trace"] and "trace" not in short
    assert verdict["qualification"] == short["qualification"] == decision["qualification"]
    assert full["score"] == decision["score"] == verdict["score"]


def test_rows_that_are_not_accounts_keep_their_place_with_an_error(spark):
    df = spark.createDataFrame(
        [(1, json.dumps(ACCOUNT)), (2, None), (3, '"text"'), (4, '{"account_id": 5}')],
        "n long, value string",
    )
    out = evaluate(df, RULESETS, json_column="value", keep=["n"])
    rows = out.orderBy("n").collect()
    assert [r["n"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["error"] is None and rows[0]["qualification"]
    assert [json.loads(r["error"])["code"] for r in rows[1:]] == [
        "facts.unreadable",
        "facts.unreadable",
        "facts.invalid",
    ]
    assert all(r["qualification"] is None for r in rows[1:])
    assert error_counts(out) == {"facts.unreadable": 2, "facts.invalid": 1}


def test_evaluate_refuses_unknown_views_and_columns(spark):
    df = spark.createDataFrame([("{}",)], "value string")
    with pytest.raises(ValueError, match="unknown view"):
        evaluate(df, RULESETS, view="everything", json_column="value")
    with pytest.raises(ValueError, match="no column `facts`"):
        evaluate(df, RULESETS, json_column="facts")
