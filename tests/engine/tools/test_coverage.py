"""Unit tests of engine.tools.coverage on hand-built traces, and on the tiny fixture ruleset."""

from __future__ import annotations

from typing import Any

from builders import FIXTURES

from engine.tools.coverage import COVERED, PARTIAL, UNCOVERED, measure, percent

RULES = [("qualify.big", "criterion"), ("segment.loyal", "segment"), ("guard.thin", "guardrail")]
TINY = FIXTURES / "casetest" / "tiny"


def entry(rule: str, outcome: str, *comparisons: bool | None) -> dict[str, Any]:
    return {
        "rule": rule,
        "outcome": outcome,
        "comparisons": [
            {"expr": f"{rule} x >= p", "left": 1, "op": ">=", "right": 2, "result": r, "param": "p"}
            for r in comparisons
        ]
        + [{"expr": "y > 0", "left": 1, "op": ">", "right": 0, "result": True, "param": None}],
    }


def trace(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"trace": list(entries)}


def test_two_of_three_rules_both_fired_and_not_fired_is_66_7_percent():
    verdicts = [
        trace(
            entry("qualify.big", "fired", True),
            entry("segment.loyal", "not_fired", False),
            entry("guard.thin", "not_fired", False),
        ),
        trace(
            entry("qualify.big", "not_fired", False),
            entry("segment.loyal", "fired", True),
            entry("guard.thin", "not_evaluable", None),
        ),
    ]
    cov = measure("demo", RULES, verdicts)
    assert cov.cases == 2
    assert cov.percent == 66.7
    assert [r.status for r in cov.rules] == [COVERED, COVERED, PARTIAL]
    guard = cov.rules[2]
    assert (guard.fired, guard.not_fired, guard.not_evaluable) == (0, 1, 1)
    assert guard.missing == ["fired"]
    assert [r.rule for r in cov.incomplete] == ["guard.thin"]
    # thresholds: only comparisons with a param count; guard.thin saw false and unknown
    assert [(t.rule, t.true, t.false, t.unknown) for t in cov.thresholds] == [
        ("qualify.big", 1, 1, 0),
        ("segment.loyal", 1, 1, 0),
        ("guard.thin", 0, 1, 1),
    ]
    assert cov.threshold_percent == 66.7
    assert cov.meets(66.7) and not cov.meets(100)


def test_rule_never_reached_is_uncovered_and_only_not_evaluable_is_uncovered_too():
    verdicts = [trace(entry("qualify.big", "fired"), entry("segment.loyal", "not_evaluable"))]
    cov = measure("demo", RULES, verdicts)
    assert [r.status for r in cov.rules] == [PARTIAL, UNCOVERED, UNCOVERED]
    assert cov.rules[2].missing == ["fired", "not_fired"]
    assert cov.percent == 0.0
    assert cov.thresholds == []
    assert cov.threshold_percent == 100.0


def test_ruleset_without_cases_is_zero_percent():
    cov = measure("demo", RULES, [])
    assert cov.percent == 0.0
    assert not cov.meets(0.1)
    assert cov.meets(None)


def test_to_dict_carries_the_numbers():
    data = measure("demo", RULES, [trace(entry("qualify.big", "fired", True))]).to_dict()
    assert (data["rules"], data["covered"], data["partial"], data["uncovered"]) == (3, 0, 1, 2)
    assert data["thresholds"]["total"] == 1
    assert data["per_rule"][0]["missing"] == ["not_fired"]


def test_percent_rounds_to_one_decimal():
    assert percent(2, 3) == 66.7
    assert percent(1, 3) == 33.3
    assert percent(0, 0) == 100.0


def test_coverage_of_the_tiny_fixture_with_the_real_engine():
    from engine import load_rulesets
    from engine.tools.casetest import discover, load_case_file, run_suite
    from engine.tools.coverage import rule_list

    rulesets = load_rulesets(TINY)
    suite = run_suite([load_case_file(p) for p in discover(TINY)], rulesets)
    assert suite.ok
    cov = measure("tiny", rule_list(rulesets["tiny"]), suite.verdicts("tiny"))
    assert cov.percent == 66.7
    assert [(r.rule, r.fired, r.not_fired, r.not_evaluable) for r in cov.rules] == [
        ("qualify.big", 1, 1, 1),
        ("segment.loyal", 2, 1, 0),
        ("guard.thin_margin", 0, 3, 0),
    ]
    assert {(t.param, t.covered) for t in cov.thresholds} == {
        ("big_spend", True),
        ("loyal_years", True),
        ("min_margin_pct", False),
    }
