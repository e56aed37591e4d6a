"""Unit tests of engine.tools.casetest: loading with locations, comparing, running against fakes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import EvaluationError, FactsError
from engine.tools.casetest import (
    ERROR,
    FAILED,
    PASSED,
    CaseFile,
    compare,
    format_result,
    load_case_file,
    run_case,
    run_case_file,
)

FILE = Path("demo.tests.yaml")


def load(text: str) -> CaseFile:
    return load_case_file(FILE, text)


def codes_at(diags: list[Any]) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.code) for d in diags]


def verdict(**overrides: Any) -> dict[str, Any]:
    """A hand-built verdict of the documented shape (docs/engine-api.md)."""
    base: dict[str, Any] = {
        "qualification": "key_account",
        "score": 60.0000004,
        "segments": ["loyal", "economic"],
        "stage": None,
        "criteria": [{"rule": "qualify.big", "outcome": "met"}],
        "guardrails": [{"rule": "guard.thin", "severity": "warning"}],
        "missing_facts": ["margin_pct"],
        "decision": {"step": 2, "qualification": "key_account"},
        "trace": [
            {
                "rule": "qualify.big",
                "kind": "criterion",
                "outcome": "fired",
                "facts": {"annual_spend": 2_000_000},
                "comparisons": [
                    {
                        "expr": "annual_spend >= big_spend",
                        "left": 2_000_000,
                        "op": ">=",
                        "right": 1_000_000,
                        "result": True,
                        "param": "big_spend",
                    }
                ],
            },
            {"rule": "segment.loyal", "kind": "segment", "outcome": "fired", "facts": {}},
            {"rule": "guard.thin", "kind": "guardrail", "outcome": "fired", "facts": {}},
            {"rule": "guard.other", "kind": "guardrail", "outcome": "not_evaluable", "facts": {}},
        ],
    }
    base.update(overrides)
    return base


@dataclass
class Rule:
    id: str
    kind: str


class FakeRuleset:
    """Stands in for a PreparedRuleset: returns a fixed verdict or raises."""

    name = "demo"
    rules = [
        Rule("qualify.big", "criterion"),
        Rule("segment.loyal", "segment"),
        Rule("guard.thin", "guardrail"),
        Rule("guard.other", "guardrail"),
    ]

    def __init__(self, answer: Any = None):
        self.answer = answer if answer is not None else verdict()
        self.seen: list[Mapping[str, Any]] = []

    def evaluate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        self.seen.append(dict(raw))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


# --------------------------------------------------------------------------- loading


def test_load_merges_facts_over_the_base_and_unsets():
    cf = load(
        """
ruleset: demo
bases:
  big: {account_id: A, annual_spend: 5, years: 3, margin_pct: 1}
cases:
  - note: merged
    base: big
    facts: {years: 9, extra: [a, b]}
    unset: [margin_pct]
    want: {score: 60}
"""
    )
    assert cf.diagnostics == []
    (case,) = cf.cases
    assert case.diagnostics == []
    assert case.facts == {"account_id": "A", "annual_spend": 5, "years": 9, "extra": ["a", "b"]}
    assert case.want == {"score": 60}
    assert (case.loc.line, case.loc.col) == (6, 11)
    assert (case.fact_locs["years"].line, case.fact_locs["annual_spend"].line) == (8, 4)
    assert type(case.facts["extra"]) is list


def test_load_without_ruleset_key_names_the_ruleset_after_the_file():
    assert load("cases: []\n").ruleset == "demo"


def test_load_reports_yaml_syntax_error_with_location():
    cf = load("cases:\n  - note: a\n    want: {score: [1}\n")
    assert [d.code for d in cf.diagnostics] == ["case.yaml"]
    assert cf.diagnostics[0].line == 3


def test_load_reports_duplicate_key_as_yaml_error():
    cf = load("cases: []\ncases: []\n")
    assert codes_at(cf.diagnostics) == [(2, 1, "case.yaml")]


def test_load_reports_unknown_top_level_key_with_hint():
    cf = load("ruleset: demo\nbase: {}\ncases: []\n")
    assert codes_at(cf.diagnostics) == [(2, 1, "case.unknown_key")]
    assert cf.diagnostics[0].hint == "did you mean `bases`?"


def test_load_rejects_a_document_that_is_not_a_mapping():
    assert codes_at(load("- 1\n").diagnostics) == [(1, 1, "case.shape")]


def test_load_locates_case_problems_on_the_case_not_the_file():
    cf = load(
        """
bases:
  b: {x: 1}
cases:
  - note: unknown key
    bse: b
  - note: unknown base
    base: c
  - note: unset absent
    base: b
    unset: [y]
  - note: unknown key in want
    want: {scroe: 1}
  - note: bad score
    want: {score: high}
  - note: bad criterion outcome
    want: {criteria: {qualify.big: yes}}
  - note: contradiction
    want: {fired: [r.a], not_fired: [r.a]}
  - note: error with verdict keys
    want: {error: facts.invalid, qualification: key_account}
  - want: {}
  - note: set and unset
    base: b
    facts: {x: 2}
    unset: [x]
"""
    )
    assert cf.diagnostics == []
    got = [codes_at(c.diagnostics) for c in cf.cases]
    assert got == [
        [(6, 5, "case.unknown_key")],
        [(8, 11, "case.unknown_base")],
        [(11, 13, "case.unset_absent")],
        [(13, 12, "case.unknown_key")],
        [(15, 19, "case.shape")],
        [(17, 36, "case.shape")],
        [(19, 38, "case.contradiction")],
        [(21, 34, "case.shape")],
        [(22, 5, "case.shape")],
        [(26, 13, "case.contradiction")],
    ]
    assert cf.cases[0].diagnostics[0].hint == "did you mean `base`?"
    assert cf.cases[3].diagnostics[0].hint == "did you mean `score`?"


def test_load_reports_duplicate_notes():
    cf = load("cases:\n  - note: same\n  - note: same\n")
    assert codes_at(cf.cases[1].diagnostics) == [(3, 11, "case.duplicate_note")]
    assert cf.cases[0].diagnostics == []


def test_load_error_facts_needs_error():
    cf = load("cases:\n  - note: a\n    want: {error_facts: [x]}\n")
    assert [d.code for d in cf.cases[0].diagnostics] == ["case.shape"]


# --------------------------------------------------------------------------- compare


def test_compare_accepts_a_matching_want():
    want = {
        "qualification": "key_account",
        "score": 60,
        "segments": ["economic", "loyal"],
        "stage": None,
        "guardrails": {"guard.thin": "warning"},
        "missing_facts": ["margin_pct"],
        "fired": ["qualify.big", "segment.loyal"],
        "not_evaluable": ["guard.other"],
        "criteria": {"qualify.big": "met"},
    }
    assert compare(want, verdict()) == []


@pytest.mark.parametrize(
    ("want", "key", "expected", "actual"),
    [
        ({"qualification": "not_key_account"}, "qualification", "not_key_account", "key_account"),
        ({"score": 59.99}, "score", 59.99, 60.0000004),
        ({"segments": ["loyal"]}, "segments", ["loyal"], ["economic", "loyal"]),
        ({"stage": "grow"}, "stage", "grow", None),
        ({"guardrails": {}}, "guardrails", {}, {"guard.thin": "warning"}),
        (
            {"guardrails": {"guard.thin": "high"}},
            "guardrails",
            {"guard.thin": "high"},
            {"guard.thin": "warning"},
        ),
        ({"missing_facts": []}, "missing_facts", [], ["margin_pct"]),
        ({"not_fired": ["segment.loyal"]}, "outcome[segment.loyal]", "not_fired", "fired"),
        ({"fired": ["guard.other"]}, "outcome[guard.other]", "fired", "not_evaluable"),
        ({"criteria": {"qualify.big": "partly_met"}}, "criteria[qualify.big]", "partly_met", "met"),
    ],
)
def test_compare_reports_each_kind_of_mismatch(want, key, expected, actual):
    (m,) = compare(want, verdict())
    assert (m.key, m.expected, m.actual) == (key, expected, actual)


def test_compare_score_tolerance_is_one_millionth():
    assert compare({"score": 60}, verdict(score=60.000001)) == []
    assert len(compare({"score": 60}, verdict(score=60.0000021))) == 1


def test_compare_names_the_rules_that_decided_a_mismatch():
    (m,) = compare({"guardrails": {}}, verdict())
    assert m.rules == ["guard.thin"]
    (m,) = compare({"qualification": "x"}, verdict())
    assert m.rules == ["qualify.big"]


# --------------------------------------------------------------------------- running

CASES = """
ruleset: demo
bases:
  big: {account_id: A, annual_spend: 2000000}
cases:
  - note: good
    base: big
    want: {qualification: key_account, fired: [qualify.big]}
  - note: wrong
    base: big
    want: {qualification: not_key_account}
  - note: unknown rule
    base: big
    want: {fired: [qualify.bgi], criteria: {segment.loyal: met}, guardrails: {qualify.big: high}}
"""


def test_run_case_passes_fails_and_errors():
    rs = FakeRuleset()
    cf = load(CASES)
    results = run_case_file(cf, {"demo": rs}).results
    assert [r.status for r in results] == [PASSED, FAILED, ERROR]
    assert rs.seen == [{"account_id": "A", "annual_spend": 2_000_000}] * 2
    assert results[1].id == "demo::wrong"
    assert codes_at(results[2].diagnostics) == [
        (14, 20, "case.unknown_rule"),
        (14, 45, "case.wrong_kind"),
        (14, 79, "case.wrong_kind"),
    ]
    assert results[2].diagnostics[0].hint == "did you mean `qualify.big`?"


def test_run_case_file_reports_unknown_ruleset_at_its_key():
    cf = load("ruleset: dmeo\ncases:\n  - note: a\n")
    result = run_case_file(cf, {"demo": FakeRuleset()})
    assert result.results == []
    assert codes_at(result.diagnostics) == [(1, 10, "case.unknown_ruleset")]


def test_invalid_facts_without_wanted_error_is_a_located_error():
    cf = load("cases:\n  - note: a\n    facts: {account_id: A, annual_spend: -5}\n")
    err = FactsError([{"loc": ["annual_spend"], "msg": "must be >= 0", "type": "x"}])
    result = run_case(cf.cases[0], FakeRuleset(err), "f")
    assert result.status == ERROR
    assert codes_at(result.diagnostics) == [(3, 28, "case.invalid_facts")]


def test_wanted_error_passes_when_evaluation_raises_it():
    cf = load(
        "cases:\n  - note: a\n    facts: {annual_spend: -5}\n"
        "    want: {error: facts.invalid, error_facts: [annual_spend]}\n"
    )
    err = FactsError([{"loc": ["annual_spend"], "msg": "must be >= 0", "type": "x"}])
    assert run_case(cf.cases[0], FakeRuleset(err)).status == PASSED
    other = FactsError([{"loc": ["years"], "msg": "bad", "type": "x"}])
    result = run_case(cf.cases[0], FakeRuleset(other))
    assert result.status == FAILED
    assert result.mismatches[0].key == "error_facts"
    result = run_case(cf.cases[0], FakeRuleset())
    assert result.status == FAILED
    assert result.mismatches[0].expected == "facts.invalid"


def test_unexpected_evaluation_error_fails_the_case():
    cf = load("cases:\n  - note: a\n")
    result = run_case(cf.cases[0], FakeRuleset(EvaluationError("two stages fired")))
    assert result.status == FAILED
    assert "evaluation.failed: two stages fired" in result.mismatches[0].actual


def test_format_result_shows_expected_actual_and_deciding_facts():
    cf = load("cases:\n  - note: a\n    want: {qualification: not_key_account}\n")
    text = format_result(run_case(cf.cases[0], FakeRuleset()))
    assert "FAILED demo::a" in text
    assert "qualification: expected not_key_account, got key_account" in text
    assert "decision step 2 chose key_account" in text
    assert "annual_spend=2000000" in text
    assert "annual_spend >= big_spend: 2000000 >= 1000000 -> true (param big_spend)" in text


# --------------------------------------------------------------------------- properties

RULE_IDS = ["qualify.a", "qualify.b", "segment.c", "guard.d", "guard.e"]


@st.composite
def verdicts(draw: st.DrawFn) -> dict[str, Any]:
    outcomes = {r: draw(st.sampled_from(["fired", "not_fired", "not_evaluable"])) for r in RULE_IDS}
    return {
        "qualification": draw(st.sampled_from(["key_account", "not_key_account"])),
        "score": draw(st.floats(0, 100, allow_nan=False)),
        "segments": draw(st.lists(st.sampled_from(["x", "y", "z"]), unique=True)),
        "stage": draw(st.sampled_from([None, "grow"])),
        "criteria": [
            {"rule": r, "outcome": draw(st.sampled_from(["met", "partly_met", "not_met"]))}
            for r in RULE_IDS[:2]
        ],
        "guardrails": [
            {"rule": r, "severity": draw(st.sampled_from(["info", "warning", "high"]))}
            for r in RULE_IDS[3:]
            if outcomes[r] == "fired"
        ],
        "missing_facts": sorted(draw(st.sets(st.sampled_from(["f1", "f2", "f3"])))),
        "trace": [{"rule": r, "outcome": o, "facts": {}} for r, o in outcomes.items()],
    }


@given(verdicts(), st.randoms())
def test_compare_accepts_any_want_read_off_the_verdict(v: dict[str, Any], rnd: Any) -> None:
    want: dict[str, Any] = {
        "qualification": v["qualification"],
        "score": v["score"] + 1e-7,
        "segments": list(reversed(v["segments"])),
        "stage": v["stage"],
        "guardrails": {g["rule"]: g["severity"] for g in v["guardrails"]},
        "missing_facts": list(reversed(v["missing_facts"])),
        "criteria": {c["rule"]: c["outcome"] for c in v["criteria"]},
    }
    for t in v["trace"]:
        want.setdefault(t["outcome"], []).append(t["rule"])
    keys = list(want)
    rnd.shuffle(keys)
    assert compare({k: want[k] for k in keys[: rnd.randint(0, len(keys))]}, v) == []
    assert compare(want, v) == []
