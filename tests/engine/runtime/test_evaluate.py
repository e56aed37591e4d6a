"""Evaluation through `engine.prepare(...)`: every language feature on small inline rulesets,
and the verdict's shape on the example ruleset (tests/fixtures/rulesets/mini.yaml)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from builders import FIXTURES

import engine

MINI = FIXTURES / "rulesets" / "mini.yaml"

FACTS = {
    "account_id": {"type": "string", "required": True},
    "n": {"type": "number"},
    "m": {"type": "number"},
    "i": {"type": "integer"},
    "s": {"type": "string"},
    "e": {"type": "enum", "values": ["x", "y", "z"]},
    "b": {"type": "boolean"},
    "c": {"type": "boolean"},
    "l": {"type": "list", "values": ["a", "b", "c", "d"]},
}


def ruleset_doc(rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kaq": 1,
        "name": "feat",
        "version": "1",
        "qualifications": {
            "good": {"en": "good", "zh": "好"},
            "maybe": {"en": "maybe", "zh": "可能"},
            "poor": {"en": "poor", "zh": "差"},
        },
        "segments": {"big": {"en": "big", "zh": "大"}, "old": {"en": "old", "zh": "老"}},
        "stages": {"new": {"en": "new", "zh": "新"}, "grown": {"en": "grown", "zh": "成熟"}},
        "facts": FACTS,
        "params": {"p": {"value": 10}, "half": {"value": 0.5}, "names": {"value": ["x", "y"]}},
        "rules": rules,
        "decision": {"steps": [{"qualification": "good"}]},
    }
    doc.update(extra)
    return doc


@pytest.fixture
def prepare():
    made: list[engine.PreparedRuleset] = []

    def make(rules: list[dict[str, Any]], **extra: Any) -> engine.PreparedRuleset:
        rs = engine.prepare("feat.yaml", json.dumps(ruleset_doc(rules, **extra)))
        made.append(rs)
        return rs

    yield make
    for rs in made:
        rs.close()


def outcomes(v: dict[str, Any]) -> dict[str, str]:
    return {t["rule"]: t["outcome"] for t in v["trace"]}


def guard(rid: str, when: str, **kw: Any) -> dict[str, Any]:
    return {"id": rid, "kind": "guardrail", "severity": "info", "when": when, **kw}


# (expression, facts, outcome)
FEATURES = [
    # literals and names
    ("true", {}, "fired"),
    ("false", {}, "not_fired"),
    ("n == 3", {"n": 3}, "fired"),
    ("n == 3.5", {"n": 3.5}, "fired"),
    ("n == -2", {"n": -2}, "fired"),
    ("s == 'hello'", {"s": "hello"}, "fired"),
    ('s == "hello"', {"s": "hello"}, "fired"),
    ("s != 'hello'", {"s": "other"}, "fired"),
    ("b", {"b": True}, "fired"),
    ("b", {"b": False}, "not_fired"),
    ("b == false", {"b": False}, "fired"),
    ("i == 3", {"i": 3}, "fired"),
    # arithmetic
    ("n + m == 5", {"n": 2, "m": 3}, "fired"),
    ("n - m == -1", {"n": 2, "m": 3}, "fired"),
    ("n * m == 6", {"n": 2, "m": 3}, "fired"),
    ("n / m == 0.5", {"n": 2, "m": 4}, "fired"),
    ("-n == m", {"n": 2, "m": -2}, "fired"),
    ("n + m * 2 == 8", {"n": 2, "m": 3}, "fired"),
    ("(n + m) * 2 == 10", {"n": 2, "m": 3}, "fired"),
    ("n * m == 0", {"n": 0}, "fired"),
    ("n / m > 0", {"n": 1, "m": 0}, "not_evaluable"),
    # comparisons and chains
    ("n < m", {"n": 1, "m": 2}, "fired"),
    ("n <= m", {"n": 2, "m": 2}, "fired"),
    ("n > m", {"n": 2, "m": 2}, "not_fired"),
    ("n >= m", {"n": 2, "m": 2}, "fired"),
    ("n != m", {"n": 2, "m": 2}, "not_fired"),
    ("0 < n <= 5", {"n": 5}, "fired"),
    ("0 < n <= 5", {"n": 0}, "not_fired"),
    ("0 < n <= 5", {"n": 6}, "not_fired"),
    ("0 < n < m < 10", {"n": 1, "m": 2}, "fired"),
    ("0 < n < m < 10", {"n": 1}, "not_evaluable"),
    ("0 < n < m < 10", {"n": -1}, "not_fired"),
    # and / or / not
    ("b and c", {"b": True, "c": True}, "fired"),
    ("b and c", {"b": True}, "not_evaluable"),
    ("b and c", {"c": False}, "not_fired"),
    ("b or c", {"c": True}, "fired"),
    ("b or c", {"b": False}, "not_evaluable"),
    ("not b", {"b": False}, "fired"),
    ("not (n > 1 and b)", {"n": 0}, "fired"),
    ("not (n > 1 or b)", {"n": 0, "b": False}, "fired"),
    # in / not in on list literals and list facts
    ("e in ['x', 'y']", {"e": "y"}, "fired"),
    ("e in ['x', 'y']", {"e": "z"}, "not_fired"),
    ("e not in ['x', 'y']", {"e": "z"}, "fired"),
    ("e in names", {"e": "x"}, "fired"),
    ("n in [1, 2, 3]", {"n": 2}, "fired"),
    ("n not in [1, 2, 3]", {"n": 2.5}, "fired"),
    ("s in ['a', 'b']", {"s": "b"}, "fired"),
    ("'a' in l", {"l": ["b", "a"]}, "fired"),
    ("'a' in l", {"l": ["b"]}, "not_fired"),
    ("'a' not in l", {"l": ["b"]}, "fired"),
    ("'a' in l", {"l": []}, "not_fired"),
    ("'a' in l", {}, "not_evaluable"),
    ("e in l", {"e": "x", "l": ["a"]}, "not_fired"),
    # functions
    ("min(n, m) == 1", {"n": 1, "m": 2}, "fired"),
    ("min(n, m, 0) == 0", {"n": 1, "m": 2}, "fired"),
    ("max(n, m) == 2", {"n": 1, "m": 2}, "fired"),
    ("max(n, 1) == 1", {}, "not_evaluable"),
    ("abs(n) == 3", {"n": -3}, "fired"),
    ("len(l) == 2", {"l": ["a", "b", "a"]}, "fired"),
    ("len(l) == 0", {"l": []}, "fired"),
    ("count(l, ['a', 'c']) == 2", {"l": ["a", "b", "c", "a"]}, "fired"),
    ("count(l, ['d']) == 0", {"l": ["a"]}, "fired"),
    ("at_least(2, b, c, n > 1)", {"b": True, "n": 2}, "fired"),
    ("at_least(2, b, c, n > 1)", {"b": True, "c": False, "n": 0}, "not_fired"),
    ("at_least(2, b, c, n > 1)", {"b": True}, "not_evaluable"),
    ("not at_least(2, b, c, n > 1)", {"b": False, "c": False}, "fired"),
    ("known(n)", {"n": 0}, "fired"),
    ("known(n)", {}, "not_fired"),
    ("not known(l)", {}, "fired"),
    ("known(l)", {"l": []}, "fired"),
    # params
    ("n > p", {"n": 11}, "fired"),
    ("n > p * half", {"n": 6}, "fired"),
    ("n <= p / 2", {"n": 6}, "not_fired"),
]


@pytest.mark.parametrize(
    ("expression", "facts", "outcome"), FEATURES, ids=[f"{e}|{f}" for e, f, _ in FEATURES]
)
def test_language_feature_evaluates(prepare, expression, facts, outcome):
    rs = prepare([guard("g", expression)])
    v = rs.evaluate({"account_id": "A", **facts})
    assert v["trace"][0]["outcome"] == outcome


def test_derived_facts_are_computed_before_rules_and_shown(prepare):
    derived = {
        "total": {"expr": "n + m", "unit": "money"},
        "share": {"expr": "n / total"},
        "flag": {"expr": "total > p"},
    }
    rs = prepare([guard("g", "share >= 0.25 and flag")], derived=derived)
    v = rs.evaluate({"account_id": "A", "n": 5, "m": 15})
    assert v["derived"] == {"total": 20, "share": 0.25, "flag": True}
    assert v["trace"][0]["outcome"] == "fired"
    assert v["trace"][0]["facts"] == {"share": 0.25, "flag": True}


def test_derived_fact_on_missing_input_is_unknown_and_the_input_is_missing(prepare):
    derived = {"total": {"expr": "n + m"}}
    rs = prepare([guard("g", "total > 1")], derived=derived)
    v = rs.evaluate({"account_id": "A", "n": 5})
    assert v["derived"] == {"total": None}
    assert v["trace"][0]["outcome"] == "not_evaluable"
    assert v["missing_facts"] == ["m"]  # the input fact, never the derived one


def test_derived_division_by_zero_is_unknown_with_nothing_missing(prepare):
    rs = prepare([guard("g", "ratio > 1")], derived={"ratio": {"expr": "n / m"}})
    v = rs.evaluate({"account_id": "A", "n": 5, "m": 0})
    assert v["derived"] == {"ratio": None}
    assert v["trace"][0]["outcome"] == "not_evaluable"
    assert v["missing_facts"] == []


def test_derived_fact_missing_text_is_printed_when_it_is_unknown(prepare):
    derived = {
        "ratio": {
            "expr": "n / m",
            "unit": "ratio",
            "missing": {"en": "not computable", "zh": "无法计算"},
        }
    }
    rule = guard("g", "n > 0")
    rule["message"] = {"en": "n {n}, ratio {ratio}", "zh": "n {n}，比值{ratio}"}
    rs = prepare([rule], derived=derived)
    by_zero = rs.evaluate({"account_id": "A", "n": 5, "m": 0})["guardrails"][0]["message"]
    assert by_zero == {"en": "n 5, ratio not computable", "zh": "n 5，比值无法计算"}
    known = rs.evaluate({"account_id": "A", "n": 5, "m": 4})["guardrails"][0]["message"]
    assert known == {"en": "n 5, ratio 1.25", "zh": "n 5，比值1.25"}


def _crit(rid: str, when: str, weight: Any, required: bool = False, **kw: Any) -> dict[str, Any]:
    return {"id": rid, "kind": "criterion", "weight": weight, "required": required, "when": when}


def test_criteria_score_partly_when_and_required_counts(prepare):
    rules = [
        {**_crit("c.full", "n >= 10", 40, True), "partly_when": "n >= 5"},
        _crit("c.bool", "b", "p", True),
        _crit("c.opt", "m > 0", 30),
        guard("g.score", "score >= 50"),
    ]
    rs = prepare(rules)
    v = rs.evaluate({"account_id": "A", "n": 7, "b": True, "m": 1})
    assert [(c["rule"], c["outcome"], c["points"], c["max_points"]) for c in v["criteria"]] == [
        ("c.full", "partly_met", 20, 40),
        ("c.bool", "met", 10, 10),
        ("c.opt", "met", 30, 30),
    ]
    assert v["score"] == 60
    assert outcomes(v) == {
        "c.full": "fired",
        "c.bool": "fired",
        "c.opt": "fired",
        "g.score": "fired",
    }
    v = rs.evaluate({"account_id": "A", "n": 1, "b": False})
    assert [c["outcome"] for c in v["criteria"]] == ["not_met", "not_met", "not_evaluable"]
    assert v["score"] == 0 and v["missing_facts"] == ["m"]
    v = rs.evaluate({"account_id": "A", "n": 12})
    assert [c["outcome"] for c in v["criteria"]] == ["met", "not_evaluable", "not_evaluable"]
    assert outcomes(v)["g.score"] == "not_fired"  # 40 points, known: two criteria are unknown


def test_outcome_variables_evaluate_in_stages(prepare):
    rules = [
        _crit("c.n", "n > 1", 60, True),
        _crit("c.b", "b", 40, True),
        {"id": "s.big", "kind": "segment", "segment": "big", "when": "score >= 60"},
        {"id": "s.old", "kind": "segment", "segment": "old", "when": "i > 5"},
        {"id": "st.grown", "kind": "stage", "stage": "grown", "when": "'big' in segments"},
        {"id": "st.new", "kind": "stage", "stage": "new", "when": "'big' not in segments"},
        guard("g.q", "qualification == 'good' and stage == 'grown'"),
    ]
    steps = [
        {"when": "required_not_met > 0", "qualification": "poor"},
        {"when": "required_not_evaluable > 0", "qualification": "maybe"},
        {"when": "score >= 100", "qualification": "good"},
        {"qualification": "maybe"},
    ]
    rs = prepare(rules, decision={"steps": steps})
    v = rs.evaluate({"account_id": "A", "n": 2, "b": True, "i": 9})
    assert (v["qualification"], v["score"], v["segments"], v["stage"]) == (
        "good",
        100,
        ["big", "old"],
        "grown",
    )
    assert v["decision"] == {"step": 3, "qualification": "good"}
    assert outcomes(v)["g.q"] == "fired"
    v = rs.evaluate({"account_id": "A", "n": 2, "b": False})
    assert (v["qualification"], v["segments"], v["stage"]) == ("poor", ["big"], "grown")
    v = rs.evaluate({"account_id": "A", "n": 2})
    assert v["qualification"] == "maybe" and v["decision"]["step"] == 2
    v = rs.evaluate({"account_id": "A", "n": 0, "b": True})
    assert (v["qualification"], v["segments"], v["stage"]) == ("poor", [], "new")
    assert outcomes(v)["g.q"] == "not_fired"


def test_stage_is_unknown_when_no_stage_rule_fires(prepare):
    rules = [
        {
            "id": "st.new",
            "kind": "stage",
            "stage": "new",
            "when": "b",
            "playbook": [{"en": "hi", "zh": "你好"}],
        },
        guard("g.stage", "stage == 'new'"),
    ]
    rs = prepare(rules)
    v = rs.evaluate({"account_id": "A", "b": False})
    assert v["stage"] is None and v["recommendations"] == []
    assert outcomes(v)["g.stage"] == "not_evaluable"
    v = rs.evaluate({"account_id": "A", "b": True})
    assert v["stage"] == "new"
    assert v["recommendations"] == [{"rule": "st.new", "message": {"en": "hi", "zh": "你好"}}]


def test_escalate_takes_the_highest_level_that_holds(prepare):
    rule = guard(
        "g",
        "n < 10",
        severity="info",
        escalate=[
            {"severity": "warning", "when": "n < 5"},
            {"severity": "high", "when": "n < 0"},
        ],
    )
    rs = prepare([rule, guard("h", "b", severity="warning")])
    sev = {
        n: [
            (g["rule"], g["severity"])
            for g in rs.evaluate({"account_id": "A", "n": n, "b": True})["guardrails"]
        ]
        for n in (7, 3, -1)
    }
    assert sev == {
        7: [("h", "warning"), ("g", "info")],
        3: [("g", "warning"), ("h", "warning")],
        -1: [("g", "high"), ("h", "warning")],
    }
    v = rs.evaluate({"account_id": "A", "n": 20, "b": True})
    assert [g["rule"] for g in v["guardrails"]] == ["h"]


def test_escalation_left_unknown_lists_what_would_decide_it(prepare):
    rule = guard("g", "n < 10", severity="info", escalate=[{"severity": "high", "when": "m < 0"}])
    rs = prepare([rule])
    v = rs.evaluate({"account_id": "A", "n": 3})
    assert v["guardrails"][0]["severity"] == "info"
    assert v["missing_facts"] == ["m"]


def test_applies_when_false_makes_the_rule_not_fired_even_if_when_is_unknown(prepare):
    rs = prepare([guard("g", "n > 1", applies_when="b")])
    assert outcomes(rs.evaluate({"account_id": "A", "b": False})) == {"g": "not_fired"}
    v = rs.evaluate({"account_id": "A", "b": True})
    assert outcomes(v) == {"g": "not_evaluable"} and v["missing_facts"] == ["n"]
    assert outcomes(rs.evaluate({"account_id": "A", "b": True, "n": 2})) == {"g": "fired"}
    assert outcomes(rs.evaluate({"account_id": "A", "n": 2})) == {"g": "not_evaluable"}


def test_applies_when_on_an_outcome_variable(prepare):
    rules = [
        _crit("c", "n > 1", 100),
        guard("g", "m < 0", applies_when="qualification == 'good'"),
    ]
    steps = [{"when": "score >= 100", "qualification": "good"}, {"qualification": "poor"}]
    rs = prepare(rules, decision={"steps": steps})
    assert outcomes(rs.evaluate({"account_id": "A", "n": 0}))["g"] == "not_fired"
    assert outcomes(rs.evaluate({"account_id": "A", "n": 2}))["g"] == "not_evaluable"
    assert outcomes(rs.evaluate({"account_id": "A", "n": 2, "m": -1}))["g"] == "fired"


def test_messages_render_with_the_accounts_values(prepare):
    rule = {
        **_crit("c", "n >= p", "p"),
        "message": {
            "met": {"en": "{n} reaches {p}", "zh": "{n}达到{p}"},
            "not_met": {"en": "{n} below {p}", "zh": "{n}低于{p}"},
            "not_evaluable": {"en": "{n:raw} unknown", "zh": "{n}未知"},
        },
    }
    rs = prepare([rule])
    assert rs.evaluate({"account_id": "A", "n": 12})["criteria"][0]["message"] == {
        "en": "12 reaches 10",
        "zh": "12达到10",
    }
    assert rs.evaluate({"account_id": "A", "n": 2})["criteria"][0]["message"]["en"] == "2 below 10"
    assert rs.evaluate({"account_id": "A"})["criteria"][0]["message"] == {
        "en": "unknown unknown",
        "zh": "未知未知",
    }


def test_decision_step_reason_becomes_the_summary(prepare):
    steps = [
        {"when": "n > 1", "qualification": "good", "reason": {"en": "n is {n}", "zh": "n为{n}"}},
        {"qualification": "poor"},
    ]
    rs = prepare([guard("g", "b")], decision={"steps": steps})
    v = rs.evaluate({"account_id": "A", "n": 2})
    assert v["qualification"] == "good" and v["summary"] == {"en": "n is 2", "zh": "n为2"}
    v = rs.evaluate({"account_id": "A"})
    assert v["qualification"] == "poor" and v["summary"] is None


# --------------------------------------------------------------------------- mini.yaml


@pytest.fixture(scope="module")
def mini():
    rs = engine.load_ruleset(MINI)
    yield rs
    rs.close()


STRONG = {
    "account_id": "M-1",
    "kind": "company",
    "spend": 2_000_000,
    "years": 3,
    "cost": 100_000,
    "margin_pct": 3,
    "active": True,
    "tags": ["a", "b", "c"],
}


def test_mini_strong_account(mini):
    v = mini.evaluate(STRONG)
    assert v["qualification"] == "good" and v["score"] == 100
    assert v["segments"] == ["big"] and v["stage"] == "active"
    assert [(g["rule"], g["severity"]) for g in v["guardrails"]] == [
        ("guard.tags", "high"),
        ("guard.margin", "warning"),
    ]
    assert v["derived"] == {"lifetime": 6_000_000, "ratio": 0.016667}
    assert len(v["recommendations"]) == 2
    assert v["recommendations"][0]["message"]["en"] == "Meet twice a year (good account)."
    assert v["missing_facts"] == []
    assert [t["rule"] for t in v["trace"]] == [r.id for r in mini.rules]


def test_mini_verdict_is_plain_json(mini):
    v = mini.evaluate(STRONG)
    assert json.loads(json.dumps(v)) == v
    assert v["ruleset"]["name"] == "mini" and v["ruleset"]["digest"].startswith("sha256:")


def test_mini_missing_facts_give_insufficient_data(mini):
    v = mini.evaluate({"account_id": "M-2"})
    assert v["qualification"] == "unknown"
    assert v["missing_facts"] == ["active", "cost", "kind", "partner", "spend", "tags", "years"]
    assert outcomes(v)["guard.known_cost"] == "not_fired"  # score 0 < maybe_score


def test_mini_partly_met_spend(mini):
    v = mini.evaluate({**STRONG, "spend": 600_000})
    assert v["criteria"][0]["outcome"] == "partly_met" and v["criteria"][0]["points"] == 20


def test_mini_unknown_cost_guard_after_score(mini):
    facts = {k: v for k, v in STRONG.items() if k != "cost"}
    v = mini.evaluate(facts)
    assert outcomes(v)["guard.known_cost"] == "fired"
    assert outcomes(v)["crit.pays_back"] == "not_evaluable"
    assert "cost" in v["missing_facts"]


def test_evaluate_many_yields_verdicts_and_errors_in_order(mini):
    items = list(mini.evaluate_many([STRONG, {"account_id": 5}, {"account_id": "M-3"}]))
    assert isinstance(items[1], engine.FactsError)
    assert items[0]["account_id"] == "M-1" and items[2]["account_id"] == "M-3"


def test_views_leave_things_out_and_never_change_the_decision():
    import json

    from builders import ROOT

    import engine

    rs = engine.load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    try:
        for path in sorted((ROOT / "examples").glob("*.json")):
            d = rs.decide(json.loads(path.read_text(encoding="utf-8")))
            full, summary, decision = (rs.view(d, v) for v in engine.VIEWS)
            assert full == rs.explain(d)
            assert "trace" not in summary and "trace" in full
            assert all("facts" not in c for c in summary["criteria"])
            assert {k: v for k, v in full.items() if k not in ("trace", "criteria")} == {
                k: v for k, v in summary.items() if k != "criteria"
            }
            for key in ("account_id", "ruleset", "qualification", "score", "segments", "stage"):
                assert decision[key] == full[key]
            assert decision["missing_facts"] == full["missing_facts"]
            assert decision["points"] == {c["rule"]: c["points"] for c in full["criteria"]}
            assert decision["severities"] == {g["rule"]: g["severity"] for g in full["guardrails"]}
            assert {
                t["rule"]: t["outcome"] for t in full["trace"] if t["kind"] != "criterion"
            }.items() <= decision["outcomes"].items()
            assert "message" not in json.dumps(decision)
        with pytest.raises(ValueError):
            rs.view(d, "everything")
    finally:
        rs.close()
