"""The engine and its explanation cannot drift apart.

For thousands of random fact sets (missing facts and threshold boundaries included), the set
of rules durable_rules fired must equal the set that an independent Kleene evaluation of the
same conditions (``expr.evaluate``, the tree-walking reference, not the closures the
evaluator uses) reports as fired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builders import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import load_ruleset
from engine.lang import expr as E

RULESETS = [
    ROOT / "rulesets" / "key-account.yaml",
    ROOT / "tests" / "fixtures" / "rulesets" / "mini.yaml",
]


def _boundaries(rs: Any) -> list[float]:
    """Every number the rules compare against, and its neighbours."""
    out: set[float] = {0, 1, -1}
    for r in rs.rules:
        nodes = [r.cond] + ([r.partly] if r.partly is not None else [])
        for node in nodes:
            for n in E.walk(node):
                v = None
                if isinstance(n, E.Const) or (isinstance(n, E.Name) and n.scope == "param"):
                    v = n.value
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out.update({v, v + 1, v - 1, v + 0.000001, v - 0.000001, v * 2, v / 2})
    return sorted(out)


def _fact_strategy(rs: Any) -> st.SearchStrategy[dict[str, Any]]:
    bounds = _boundaries(rs)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, decl in rs.fact_decls.items():
        lo = decl.min if decl.min is not None else -1e9
        hi = decl.max if decl.max is not None else 1e9
        if decl.type == "string":
            value: st.SearchStrategy[Any] = st.text(min_size=1, max_size=8)
        elif decl.type == "enum":
            value = st.sampled_from(decl.values or [])
        elif decl.type == "list":
            value = st.lists(st.sampled_from(decl.values or []), max_size=6)
        elif decl.type == "boolean":
            value = st.booleans()
        elif decl.type == "integer":
            near = [int(b) for b in bounds if lo <= b <= hi and float(b).is_integer()]
            value = st.one_of(
                st.sampled_from(near or [int(lo)]), st.integers(int(lo), int(min(hi, 1e9)))
            )
        else:
            near = [b for b in bounds if lo <= b <= hi]
            value = st.one_of(
                st.sampled_from(near or [lo]),
                st.floats(lo, min(hi, 1e12), allow_nan=False, allow_infinity=False),
                st.integers(int(lo), int(min(hi, 1e12))),
            )
        if decl.required:
            fields[name] = value
        else:
            fields[name] = st.one_of(st.none(), value)
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


def _reference_fired(rs: Any, env: dict[str, Any]) -> set[str]:
    fired = set()
    for r in rs.rules:
        if E.evaluate(r.cond, env) is True:
            fired.add(r.id)
        elif r.partly is not None and E.evaluate(r.partly, env) is True:
            fired.add(r.id)
    return fired


@pytest.mark.parametrize("path", RULESETS, ids=lambda p: p.stem)
def test_engine_fired_set_equals_explanation_on_random_facts(path: Path) -> None:
    rs = load_ruleset(path)
    checked = {"n": 0}

    @settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_fact_strategy(rs))
    def check(raw: dict[str, Any]) -> None:
        facts = rs.validate_facts(raw)
        run = rs.decide_valid(facts)  # raises EngineError on any disagreement
        engine_fired = {rid for rid, out in run.outcomes.items() if out == "fired"}
        assert engine_fired == _reference_fired(rs, run.env)
        verdict = rs.evaluate_valid(facts)
        trace_fired = {t["rule"] for t in verdict["trace"] if t["outcome"] == "fired"}
        assert trace_fired == engine_fired
        checked["n"] += 1

    try:
        check()
    finally:
        rs.close()
    assert checked["n"] >= 1000
