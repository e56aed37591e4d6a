"""The evaluator's fast paths give exactly what their plain references give.

Evaluation speed comes from specialised code: stage facts encoded by static type in one loop
(``evaluator._encoder``), comparison records filled in place (``expr.comparisons_closure``),
templates compiled once (``render.compile_template``) and messages memoised without value
types. Each is checked here against the plain form it replaces, on random fact sets of both
test rulesets (boundaries, missing facts, floats that print with an exponent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_matches_explanation import RULESETS, _fact_strategy

from engine import load_ruleset, prepare
from engine.lang import expr as E
from engine.runtime._durable import encode_value
from engine.runtime.decide import slot_value
from engine.runtime.render import compile_template, render

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ODD_FLOATS = [1e-7, -3.5e-5, 0.1 + 0.2, 123456789012.5, 99999999.995, 1e15, -1e15, 1e15 + 2]


@pytest.fixture(scope="module", params=RULESETS, ids=lambda p: Path(p).stem)
def rs(request: pytest.FixtureRequest) -> Any:
    prepared = load_ruleset(request.param)
    yield prepared
    prepared.close()


def _with_odd_floats(rs: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Fact sets where some number facts hold floats that print with an exponent."""
    numbers = [n for n, d in rs.fact_decls.items() if d.type == "number"]

    def spoil(facts: dict[str, Any], picks: list[tuple[int, float]]) -> dict[str, Any]:
        out = dict(facts)
        for i, v in picks:
            name = numbers[i % len(numbers)]
            decl = rs.fact_decls[name]
            lo = decl.min if decl.min is not None else -1e18
            hi = decl.max if decl.max is not None else 1e18
            if lo <= v <= hi:
                out[name] = v
        return out

    picks = st.lists(st.tuples(st.integers(0, 100), st.sampled_from(ODD_FLOATS)), max_size=4)
    return st.builds(spoil, _fact_strategy(rs), picks)


@given(data=st.data())
@SETTINGS
def test_stage_encoders_write_what_the_general_encoder_writes(rs: Any, data: st.DataObject) -> None:
    facts = data.draw(_with_odd_floats(rs))
    env = rs.decide_valid(facts).env
    for level, encode, *_ in rs.plan.levels:
        reference = set()
        for slot in rs.program.level_fields.get(level, []):
            v = slot_value(slot)(env)
            if v is not None:
                reference.add(f'"{slot.field}":' + encode_value(v))
        parts = encode(env)
        assert sorted(parts) == sorted(reference)
        assert not any("e" in p.split(":", 1)[1] for p in parts if '"' not in p.split(":", 1)[1])


@given(data=st.data())
@SETTINGS
def test_comparison_records_match_one_by_one_records_and_kleene(
    rs: Any, data: st.DataObject
) -> None:
    facts = data.draw(_with_odd_floats(rs))
    env = rs.decide_valid(facts).env
    for r in rs.rules:
        if not r.comparisons:
            continue
        together = E.comparisons_closure(r.comparisons)(env)
        one_by_one = [E.comparison_closure(n)(env) for n in r.comparisons]
        assert together == one_by_one
        for node, rec in zip(r.comparisons, together, strict=True):
            assert rec["result"] == E.evaluate(node, env)


@given(data=st.data())
@SETTINGS
def test_memoised_messages_equal_fresh_rendering(rs: Any, data: st.DataObject) -> None:
    facts = data.draw(_with_odd_floats(rs))
    run = rs.decide_valid(facts)
    values = {**rs.program.params, **run.env}
    c = rs.compiled

    def fresh(text: dict[str, str]) -> dict[str, str]:
        args = (rs.program.units, rs.currency, c.labels, c.missing, rs.program.words)
        return {lang: render(text[lang], values, args[0], lang, *args[1:]) for lang in ("en", "zh")}

    for _ in range(2):  # a cold memo, then a warm one
        verdict = rs.explain(run)
        for crit in verdict["criteria"]:
            rule = next(r for r in rs.rules if r.id == crit["rule"])
            text = rule.messages.get(crit["outcome"])
            if text is not None:
                assert crit["message"] == fresh(text)
        for g in verdict["guardrails"]:
            rule = next(r for r in rs.rules if r.id == g["rule"])
            # a finding says its head message, then the parts that hold; a severity level
            # with texts of its own replaces the head
            levels = {
                sev
                for (sev, _n), (m, _r) in zip(rule.escalations, rule.esc_texts, strict=True)
                if m
            }
            if "fired" in rule.messages and not rule.parts and g["severity"] not in levels:
                assert g["message"] == fresh(rule.messages["fired"])
            for part in g.get("parts", ()):
                decl = next(p for p in rule.parts if p.id == part["part"])
                if decl.message:
                    assert part["message"] == fresh(decl.message)
                if decl.recommendation:
                    assert part["recommendation"] == fresh(decl.recommendation)
            if rule.recommendation and not rule.parts and g["severity"] not in levels:
                assert g["recommendation"] == fresh(rule.recommendation)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**13), 10**13),
    st.floats(-1e13, 1e13, allow_nan=False, allow_infinity=False),
    st.sampled_from(ODD_FLOATS + [0, 1, 1.0, 0.5, 70, 70.0]),
    st.sampled_from(["gold", "silver", "某银行", "x{y}"]),
    st.lists(st.sampled_from(["gold", "silver", "bronze"]), max_size=3),
)
UNITS = {"a": "money", "b": "percent", "c": "ratio", "d": None, "e": None}
LABELS = {"d": {"gold": {"en": "Gold", "zh": "金"}, "silver": {"en": "Silver", "zh": "银"}}}
MISSING = {"e": {"en": "not given", "zh": "未提供"}}


@given(
    values=st.fixed_dictionaries({k: VALUES for k in "abcde"}),
    currency=st.sampled_from(["CNY", "USD", "XYZ"]),
    lang=st.sampled_from(["en", "zh"]),
)
@settings(max_examples=500, deadline=None)
@pytest.mark.parametrize(
    "template",
    [
        "{a} / {b} / {c} / {d} / {e} / {a:raw} {{lit}} {e:raw}",
        "{d}",  # one placeholder: the head + value + tail path
        "Hello {{x}} {e}!",
        "{a}: {c:raw}",
        "{c} {{ {d:raw} }}",
    ],
)
def test_compiled_templates_equal_render(
    template: str, values: dict[str, Any], currency: str, lang: str
) -> None:
    fill = compile_template(template, UNITS, lang, currency, LABELS, MISSING)
    expected = render(template, values, UNITS, lang, currency, LABELS, MISSING)
    assert fill(values) == expected
    assert fill(values) == expected  # the second time from its number cache
    # params rendered into the text once, when the template is compiled
    constants = {"c": values["c"], "e": values["e"]}
    partial = compile_template(template, UNITS, lang, currency, LABELS, MISSING, constants)
    assert partial({k: v for k, v in values.items() if k not in constants}) == expected


def _one_guardrail(facts: dict[str, Any], when: str, **texts: dict[str, str]) -> Any:
    """A prepared ruleset of one guardrail with the given texts (message, recommendation)."""
    doc = {
        "kaq": 1,
        "name": "one",
        "version": "1",
        "qualifications": {"q": {"en": "q", "zh": "q"}},
        "facts": {"account_id": {"type": "string", "required": True}, **facts},
        "rules": [{"id": "g", "kind": "guardrail", "severity": "info", "when": when, **texts}],
        "decision": {"steps": [{"qualification": "q"}]},
    }
    return prepare("one.yaml", json.dumps(doc))


def test_raw_placeholders_tell_1_from_1_0_through_the_memo() -> None:
    rs = _one_guardrail(
        {"n": {"type": "number"}},
        "n >= 0",
        message={"en": "n is {n:raw}, read as {n}", "zh": "n 是 {n:raw}，即 {n}"},
    )
    try:
        texts = [
            rs.evaluate({"account_id": "A", "n": n})["guardrails"][0]["message"]["en"]
            for n in (1, 1.0, 1, 1.5)
        ]
    finally:
        rs.close()
    assert texts == [
        "n is 1, read as 1",
        "n is 1.0, read as 1",
        "n is 1, read as 1",
        "n is 1.5, read as 1.5",
    ]


def test_a_template_whose_texts_never_repeat_stops_filling_the_memo() -> None:
    rs = _one_guardrail(
        {"name": {"type": "string"}, "k": {"type": "enum", "values": ["x", "y"]}},
        "k == 'x'",
        message={"en": "{name} is an x", "zh": "{name}是x"},
        recommendation={"en": "kind {k}", "zh": "类型{k}"},
    )
    try:
        sizes = []
        for i in range(1200):
            g = rs.evaluate({"account_id": f"A{i}", "name": f"客户{i}", "k": "x"})["guardrails"]
            assert g[0]["message"] == {"en": f"客户{i} is an x", "zh": f"客户{i}是x"}
            assert g[0]["recommendation"] == {"en": "kind x", "zh": "类型x"}
            sizes.append(len(rs.texts.memo))
    finally:
        rs.close()
    # every name is new: the memo held one entry per account during the trial, then no more
    # (the recommendation, the same for all, stays memoised: one entry)
    assert sizes[399] == 401
    assert sizes[-1] == sizes[500] == 401
