"""Three-valued (Kleene) logic, exhaustively: through the expression evaluator and its
closures, and through a whole prepared ruleset (trace outcomes and missing_facts)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from builders import guardrails, ruleset_text

import engine
from engine.lang import expr as E

T, F, U = True, False, None
VALUES = (T, F, U)

AND = {
    (T, T): T, (T, F): F, (T, U): U,
    (F, T): F, (F, F): F, (F, U): F,
    (U, T): U, (U, F): F, (U, U): U,
}  # fmt: skip
OR = {
    (T, T): T, (T, F): T, (T, U): T,
    (F, T): T, (F, F): F, (F, U): U,
    (U, T): T, (U, F): U, (U, U): U,
}  # fmt: skip
NOT = {T: F, F: T, U: U}

SYMBOLS = {
    "b": E.Symbol("fact", E.BOOL),
    "c": E.Symbol("fact", E.BOOL),
    "d": E.Symbol("fact", E.BOOL),
    "n": E.Symbol("fact", E.NUMBER),
    "m": E.Symbol("fact", E.NUMBER),
    "e": E.Symbol("fact", E.Type("string", ("x", "y"))),
    "l": E.Symbol("fact", E.Type("list", ("a", "b", "c"))),
    "p": E.Symbol("param", E.NUMBER, 10),
}


def _reference(node: E.Node, env: dict[str, Any]) -> Any:
    return E.evaluate(node, env)


def _closures(node: E.Node, env: dict[str, Any]) -> Any:
    return E.closure(node)(env)


@pytest.fixture(params=[_reference, _closures], ids=["evaluate", "closure"])
def ev(request):
    """Evaluate source text in an env (absent key = unknown) with one of the two evaluators."""

    def run(source: str, **env: Any) -> Any:
        node = E.parse(source)
        E.check(node, SYMBOLS, want_bool=False)
        return request.param(node, {k: v for k, v in env.items() if v is not None})

    return run


@pytest.mark.parametrize(("b", "c"), list(itertools.product(VALUES, VALUES)))
def test_and_or_truth_tables(ev, b, c):
    assert ev("b and c", b=b, c=c) is AND[b, c]
    assert ev("b or c", b=b, c=c) is OR[b, c]


@pytest.mark.parametrize("b", VALUES)
def test_not_truth_table(ev, b):
    assert ev("not b", b=b) is NOT[b]


@pytest.mark.parametrize(("b", "c", "d"), list(itertools.product(VALUES, repeat=3)))
def test_three_way_and_or_fold_left_to_right(ev, b, c, d):
    assert ev("b and c and d", b=b, c=c, d=d) is AND[AND[b, c], d]
    assert ev("b or c or d", b=b, c=c, d=d) is OR[OR[b, c], d]
    assert ev("not (b and c) or d", b=b, c=c, d=d) is OR[NOT[AND[b, c]], d]


@pytest.mark.parametrize(("b", "c", "d"), list(itertools.product(VALUES, repeat=3)))
def test_at_least_is_true_false_or_unknown_by_counting(ev, b, c, d):
    trues = [b, c, d].count(T)
    unknowns = [b, c, d].count(U)
    for n in (1, 2, 3):
        want = T if trues >= n else F if trues + unknowns < n else U
        assert ev(f"at_least({n}, b, c, d)", b=b, c=c, d=d) is want


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_comparison_with_unknown_operand_is_unknown(ev, op):
    assert ev(f"n {op} 1") is None
    assert ev(f"1 {op} n") is None
    assert ev(f"n {op} m", n=1) is None
    assert ev(f"n {op} m", m=1) is None
    assert ev(f"n {op} p") is None
    assert ev(f"not (n {op} 1)") is None


def test_enum_and_membership_with_unknown(ev):
    assert ev("e == 'x'") is None
    assert ev("e in ['x', 'y']") is None
    assert ev("e not in ['x']") is None
    assert ev("'a' in l") is None
    assert ev("'a' not in l") is None
    assert ev("'a' in l", l=[]) is False
    assert ev("'a' not in l", l=[]) is True


def test_known_is_never_unknown(ev):
    assert ev("known(n)") is False
    assert ev("known(n)", n=0) is True
    assert ev("not known(b)") is True
    assert ev("known(b)", b=False) is True


def test_unknown_decided_by_the_other_side(ev):
    assert ev("n > 1 and b", b=False) is False
    assert ev("n > 1 or b", b=True) is True
    assert ev("n > 1 and b", b=True) is None
    assert ev("n > 1 or b", b=False) is None


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_arithmetic_with_unknown_operand_is_unknown(ev, op):
    assert ev(f"n {op} m", n=3) is None
    assert ev(f"n {op} m", m=3) is None
    assert ev(f"n {op} m") is None


def test_unary_minus_and_functions_with_unknown(ev):
    assert ev("-n") is None
    assert ev("abs(n)") is None
    assert ev("min(n, m)", n=1) is None
    assert ev("max(n, 1)") is None
    assert ev("len(l)") is None
    assert ev("count(l, ['a'])") is None


def test_product_with_known_zero_is_zero_even_if_other_unknown(ev):
    assert ev("n * m", n=0) == 0
    assert ev("n * m", m=0) == 0
    assert ev("n * m", m=0.0) == 0
    assert ev("0 * m") == 0
    assert ev("n * m == 0", n=0) is True


def test_division_by_known_zero_is_unknown(ev):
    assert ev("n / m", n=1, m=0) is None
    assert ev("n / m", m=0) is None
    assert ev("n / m > 0", n=5, m=0) is None
    assert ev("n / 0", n=5) is None
    assert ev("0 / m", m=4) == 0


def test_computed_values_are_rounded_to_six_decimals_before_comparing(ev):
    assert ev("0.3 + 8.3 + 6.4 == 15") is True
    assert ev("n + 8.3 + 6.4 == 15", n=0.3) is True
    assert ev("n + m == 0.3", n=0.1, m=0.2) is True
    assert ev("n * 1 == 1", n=1.0000004) is True
    assert ev("n * 1 > 1", n=1.0000004) is False


def test_input_facts_are_compared_exactly_as_sent(ev):
    """Policy §2: 20.00000002 is not in the top 20 %; a margin of 1e-9 is above 0."""
    assert ev("n == 1", n=1.0000004) is False
    assert ev("n > 1", n=1.0000004) is True
    assert ev("n > 1", n=1.000001) is True
    assert ev("n <= 20", n=20.00000002) is False
    assert ev("n > 0", n=1e-9) is True
    assert ev("n >= 10000000", n=9999999.999999998) is False
    assert ev("n > m", n=20.00000002, m=20) is True
    assert ev("n == m", n=0.1, m=0.1) is True
    assert E.rnd(0.1 + 0.2) == 0.3
    assert E.rnd(15.000000000000002) == 15 and isinstance(E.rnd(15.000000000000002), int)


# --------------------------------------------------------------------------- through a ruleset


def _ruleset(rules: dict[str, str]) -> engine.PreparedRuleset:
    facts = {
        "b": {"type": "boolean"},
        "c": {"type": "boolean"},
        "n": {"type": "number"},
        "m": {"type": "number"},
    }
    return engine.prepare("kleene.yaml", ruleset_text(guardrails(rules), facts=facts))


OUTCOME = {T: "fired", F: "not_fired", U: "not_evaluable"}


@pytest.fixture(scope="module")
def logic():
    rs = {
        op: _ruleset({"r": when})
        for op, when in {"and": "b and c", "or": "b or c", "not": "not b"}.items()
    }
    yield rs
    for r in rs.values():
        r.close()


def _facts(**kv: Any) -> dict[str, Any]:
    return {"account_id": "K-1", **{k: v for k, v in kv.items() if v is not None}}


@pytest.mark.parametrize(("b", "c"), list(itertools.product(VALUES, VALUES)))
def test_prepared_and_or_outcomes_and_missing_facts(logic, b, c):
    for op, table in (("and", AND), ("or", OR)):
        v = logic[op].evaluate(_facts(b=b, c=c))
        want = table[b, c]
        assert v["trace"][0]["outcome"] == OUTCOME[want], (op, b, c)
        missing = sorted(k for k, x in (("b", b), ("c", c)) if x is None) if want is None else []
        assert v["missing_facts"] == missing, (op, b, c)


@pytest.mark.parametrize("b", VALUES)
def test_prepared_not_outcome(logic, b):
    v = logic["not"].evaluate(_facts(b=b))
    assert v["trace"][0]["outcome"] == OUTCOME[NOT[b]]
    assert v["missing_facts"] == (["b"] if b is None else [])


@pytest.fixture(scope="module")
def arithmetic():
    rs = _ruleset(
        {
            "product_zero": "n * m == 0",
            "division": "n / m > 0",
            "sum": "n + m > 0",
            "rounding": "n + m + 6.4 == 15",
            "literal_rounding": "0.3 + 8.3 + 6.4 == 15",
            "compare_unknown": "n > 1",
            "negated_unknown": "not (n > 1)",
        }
    )
    yield rs
    rs.close()


def _outcomes(v: dict[str, Any]) -> dict[str, str]:
    return {t["rule"]: t["outcome"] for t in v["trace"]}


def test_prepared_product_with_known_zero_fires(arithmetic):
    out = _outcomes(arithmetic.evaluate(_facts(n=0)))
    assert out["product_zero"] == "fired"
    assert out["sum"] == "not_evaluable"


def test_prepared_division_by_known_zero_is_not_evaluable(arithmetic):
    v = arithmetic.evaluate(_facts(n=5, m=0))
    assert _outcomes(v)["division"] == "not_evaluable"
    assert v["missing_facts"] == []  # nothing is missing: the quotient itself is unknown


def test_prepared_rounding_to_six_decimals(arithmetic):
    out = _outcomes(arithmetic.evaluate(_facts(n=0.3, m=8.3)))
    assert out["rounding"] == "fired"
    assert out["literal_rounding"] == "fired"


def test_prepared_comparison_on_missing_fact_is_not_evaluable_and_listed(arithmetic):
    v = arithmetic.evaluate(_facts())
    out = _outcomes(v)
    assert out["compare_unknown"] == "not_evaluable"
    assert out["negated_unknown"] == "not_evaluable"
    assert out["literal_rounding"] == "fired"
    assert v["missing_facts"] == ["m", "n"]


def test_prepared_comparison_records_unknown_side_as_null(arithmetic):
    v = arithmetic.evaluate(_facts(m=2))
    entry = next(t for t in v["trace"] if t["rule"] == "compare_unknown")
    assert entry["facts"] == {"n": None}
    assert entry["comparisons"][0]["left"] is None
    assert entry["comparisons"][0]["result"] is None
