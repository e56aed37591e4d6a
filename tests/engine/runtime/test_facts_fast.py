"""The fast check of facts accepts only what the pydantic model accepts, and gives the same
facts: same values, same types, same order. Where it doubts, the model decides."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from builders import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import FactsError
from engine.lang.model import FactDecl
from engine.runtime.facts import build_fast_check, build_model, validate

DECLS = {
    "account_id": FactDecl(type="string", required=True, max_length=8),
    "spend": FactDecl(type="number", min=0, max=1000),
    "margin": FactDecl(type="number"),
    "staff": FactDecl(type="integer", min=-5, max=50),
    "public": FactDecl(type="boolean"),
    "kind": FactDecl(type="enum", values=["a", "b", "c"]),
    "tags": FactDecl(type="list", values=["x", "y"]),
    "note": FactDecl(type="string"),
}
MODEL = build_model("t", DECLS)
FAST = build_fast_check(DECLS)


def typed(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, typed(v)) for k, v in value.items()]  # order counts
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, float) and value == 0:
        return ("float", math.copysign(1, value))
    return (type(value).__name__, value)


def by_model(raw: Any) -> Any:
    try:
        return typed(validate(MODEL, raw))
    except FactsError:
        return "refused"


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 60),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 3.0, 3.5, 1000.0, 1000.5, -5.0, 50.0, 51.0]),
    st.sampled_from(["a", "b", "c", "d", "x", "y", "", "12345678", "123456789"]),
    st.text(max_size=10),
    st.lists(st.sampled_from(["x", "y", "z", 1]), max_size=10),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
keys = st.sampled_from([*DECLS, "unknown", "Spend"])


@settings(max_examples=3000, deadline=None)
@given(st.dictionaries(keys, values, max_size=10))
def test_the_fast_check_never_accepts_what_the_model_refuses_nor_changes_a_value(raw) -> None:
    fast = FAST(raw)
    if fast is not None:
        assert typed(fast) == by_model(raw), raw


valid = st.fixed_dictionaries(
    {"account_id": st.text(max_size=8)},
    optional={
        "spend": st.one_of(st.integers(0, 1000), st.floats(0, 1000)),
        "margin": st.floats(-1e15, 1e15),
        "staff": st.one_of(st.integers(-5, 50), st.integers(-5, 50).map(float)),
        "public": st.booleans(),
        "kind": st.sampled_from(["a", "b", "c"]),
        "tags": st.lists(st.sampled_from(["x", "y"]), max_size=8),
        "note": st.none() | st.text(max_size=40),
    },
)


@settings(max_examples=1000, deadline=None)
@given(valid)
def test_plainly_valid_facts_take_the_fast_path(raw) -> None:
    fast = FAST(raw)
    assert fast is not None, raw
    assert typed(fast) == by_model(raw)


def test_the_shipped_corpus_takes_the_fast_path_with_the_models_answer() -> None:
    import engine

    rs = engine.load_rulesets(ROOT / "rulesets")["key-account"]
    try:
        lines = Path(ROOT / "corpus" / "accounts-2000.jsonl").read_text(encoding="utf-8")
        fast = 0
        for line in lines.splitlines():
            raw = json.loads(line)
            got = rs._fast_check(raw)
            fast += got is not None
            assert typed(rs.validate_facts(raw)) == typed(validate(rs.facts_model, raw))
            if got is not None:
                assert typed(got) == typed(validate(rs.facts_model, raw))
        assert fast == 2000
    finally:
        rs.close()
