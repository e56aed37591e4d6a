"""Policy §2: input facts are compared exactly as sent; only derived values are rounded.

Every comparison of an input number fact with a threshold in the default ruleset is tried
at the threshold and 1e-8 to either side: the engine (which decides) and the explanation
(the trace's comparison record) must both give the exact result.
"""

from __future__ import annotations

import json
import operator

import pytest
from builders import ROOT

import engine
from engine.lang import expr as E

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
BASE = json.loads((ROOT / "examples" / "state-bank-head-office.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rs():
    prepared = engine.load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    yield prepared
    prepared.close()


def _thresholds(rs):
    """(rule id, fact, op, threshold) of every `input fact op constant` comparison."""
    out = []
    for r in rs.rules:
        for c in r.comparisons:
            if not isinstance(c, E.Cmp) or c.op not in OPS:
                continue
            left, right = c.left, c.right
            if (
                isinstance(left, E.Name)
                and left.scope == "fact"
                and isinstance(right, E.Name | E.Const)
                and not isinstance(getattr(right, "value", None), bool)
                and isinstance(getattr(right, "value", None), int | float)
            ):
                out.append((r.id, left.name, c.op, right.value, E.unparse(c)))
    return out


def test_every_threshold_of_an_input_fact_is_exact_to_1e8(rs) -> None:
    cases = _thresholds(rs)
    assert len(cases) >= 8
    checked = 0
    for rid, fact, op, t, text in cases:
        decl = rs.fact_decls[fact]
        for value in (t - 1e-8, t, t + 1e-8):
            lo = decl.min if decl.min is not None else -1e15
            hi = decl.max if decl.max is not None else 1e15
            if decl.type == "integer" or not lo <= value <= hi:
                continue
            verdict = rs.evaluate({**BASE, fact: value})  # the engine agrees, or EngineError
            records = [
                c
                for t_ in verdict["trace"]
                if t_["rule"] == rid
                for c in t_["comparisons"]
                if c["expr"] == text
            ]
            assert records and all(c["result"] is OPS[op](value, t) for c in records), (
                rid,
                fact,
                value,
            )
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    ("fact", "value", "rule", "outcome"),
    [
        ("profit_rank_pct", 20.00000002, "qualify.profit_contribution", "not_met"),
        ("profit_rank_pct", 20, "qualify.profit_contribution", "met"),
        ("annual_spend", 9999999.999999998, "segment.economic", "not_fired"),
        ("annual_spend", 10000000, "segment.economic", "fired"),
    ],
)
def test_the_policy_examples_of_exact_comparison(rs, fact, value, rule, outcome) -> None:
    v = rs.evaluate({**BASE, fact: value, "purchase_frequency": 12})
    outcomes = {t["rule"]: t["outcome"] for t in v["trace"]}
    outcomes |= {c["rule"]: c["outcome"] for c in v["criteria"]}
    assert outcomes[rule] == outcome


def test_a_margin_of_1e9_is_above_zero_so_the_finding_is_a_warning(rs) -> None:
    v = rs.evaluate({**BASE, "gross_margin_pct": 1e-9})
    sev = {g["rule"]: g["severity"] for g in v["guardrails"]}
    assert sev["guard.volume_without_profit"] == "warning"
    v = rs.evaluate({**BASE, "gross_margin_pct": 0})
    assert {g["rule"]: g["severity"] for g in v["guardrails"]}[
        "guard.volume_without_profit"
    ] == "high"
