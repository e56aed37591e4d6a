"""The facts model: strict types, unknown fields, null as absent, lists, bounds, JSON Schema."""

from __future__ import annotations

import json
import math

import pytest
from builders import guardrails, ruleset_doc

import engine
from engine.lang.model import FactDecl
from engine.runtime import facts as F

DECLS = {
    "account_id": {"type": "string", "required": True, "max_length": 8},
    "spend": {"type": "number", "min": 0, "max": 1000},
    "years": {"type": "integer", "min": 0, "max": 50},
    "free": {"type": "number"},
    "active": {"type": "boolean"},
    "kind": {"type": "enum", "values": ["company", "public"]},
    "tags": {"type": "list", "values": ["a", "b", "c"]},
    "note": {"type": "string"},
}


@pytest.fixture(scope="module")
def rs():
    facts = {k: dict(v, description={"en": f"the {k}", "zh": k}) for k, v in DECLS.items()}
    doc = ruleset_doc(guardrails({"g": "spend > 1"}), facts=facts, name="facts")
    prepared = engine.prepare("facts.yaml", json.dumps(doc))
    yield prepared
    prepared.close()


def errors(rs, facts):
    with pytest.raises(engine.FactsError) as info:
        rs.validate_facts({"account_id": "A", **facts})
    return info.value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spend", "5000"),
        ("spend", True),
        ("spend", [1]),
        ("years", 3.5),
        ("years", "3"),
        ("years", False),
        ("active", 1),
        ("active", "true"),
        ("kind", "Company"),
        ("kind", 1),
        ("tags", "a"),
        ("tags", ["a", "z"]),
        ("note", 5),
        ("account_id", 12),
    ],
)
def test_strict_types_reject_the_wrong_type(rs, field, value):
    err = errors(rs, {field: value})
    assert [e["loc"][0] for e in err.errors] == [field]


def test_integer_written_as_whole_float_is_the_integer(rs):
    out = rs.validate_facts({"account_id": "A", "years": 3.0})
    assert out["years"] == 3 and type(out["years"]) is int


def test_wrong_type_error_keeps_the_account_id(rs):
    assert errors(rs, {"spend": "5000"}).account_id == "A"
    assert errors(rs, {"spend": "5000"}).code == "facts.invalid"


def test_unknown_field_is_rejected_and_named(rs):
    err = errors(rs, {"anual_spend": 5})
    assert [(e["loc"], e["type"]) for e in err.errors] == [(["anual_spend"], "extra_forbidden")]


def test_missing_required_fact(rs):
    with pytest.raises(engine.FactsError) as info:
        rs.validate_facts({"spend": 1})
    assert [e["loc"] for e in info.value.errors] == [["account_id"]]
    assert info.value.account_id is None


def test_every_problem_is_reported(rs):
    err = errors(rs, {"spend": "x", "years": 2.5, "nope": 1})
    assert sorted(e["loc"][0] for e in err.errors) == ["nope", "spend", "years"]


def test_not_an_object_is_rejected(rs):
    for raw in ([], "x", None, 5):
        with pytest.raises(engine.FactsError):
            rs.validate_facts(raw)


def test_null_is_absent(rs):
    out = rs.validate_facts({"account_id": "A", "spend": None, "tags": None, "active": None})
    assert out == {"account_id": "A"}
    v = rs.evaluate({"account_id": "A", "spend": None})
    assert v["trace"][0]["outcome"] == "not_evaluable" and v["missing_facts"] == ["spend"]


def test_lists_are_deduplicated_in_first_seen_order_and_empty_is_known(rs):
    out = rs.validate_facts({"account_id": "A", "tags": ["b", "a", "b", "a"]})
    assert out["tags"] == ["b", "a"]
    assert rs.validate_facts({"account_id": "A", "tags": []})["tags"] == []


def test_negative_zero_is_zero(rs):
    facts = rs.validate_facts({"account_id": "A", "free": -0.0, "spend": -0.0})
    assert math.copysign(1, facts["free"]) == 1 and math.copysign(1, facts["spend"]) == 1
    assert type(facts["free"]) is float


def test_numbers_keep_int_or_float_as_sent(rs):
    out = rs.validate_facts({"account_id": "A", "spend": 5, "free": 2.5, "years": 3})
    assert out == {"account_id": "A", "spend": 5, "free": 2.5, "years": 3}
    assert type(out["spend"]) is int and type(out["free"]) is float


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("spend", 0, True),
        ("spend", 1000, True),
        ("spend", -0.01, False),
        ("spend", 1000.5, False),
        ("years", 50, True),
        ("years", 51, False),
        ("years", -1, False),
        ("free", 1e15, True),
        ("free", -1e15, True),
        ("free", 1.0000001e15, False),
        ("free", 10**16, False),
        ("account_id", "12345678", True),
        ("account_id", "123456789", False),
        ("note", "x" * F.DEFAULT_MAX_STRING, True),
        ("note", "x" * (F.DEFAULT_MAX_STRING + 1), False),
        ("tags", ["a"] * 12, True),
        ("tags", ["a"] * 13, False),
    ],
)
def test_bounds(rs, field, value, ok):
    raw = {"account_id": "A", field: value}
    if ok:
        assert field in rs.validate_facts(raw)
    else:
        with pytest.raises(engine.FactsError) as info:
            rs.validate_facts(raw)
        assert [e["loc"][0] for e in info.value.errors] == [field]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["spend", "free", "years"])
def test_nan_and_infinity_are_not_numbers(rs, field, bad):
    err = errors(rs, {field: bad})
    assert [e["loc"] for e in err.errors] == [[field]]


def test_json_schema_contains_every_fact(rs):
    schema = rs.facts_schema()
    assert set(schema["properties"]) == set(DECLS)
    assert schema["required"] == ["account_id"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["spend"]["description"] == "the spend"
    json.dumps(schema)


def test_json_schema_types_and_bounds(rs):
    props = rs.facts_schema()["properties"]

    def variants(p):
        return p.get("anyOf", [p])

    spend = next(v for v in variants(props["spend"]) if v.get("type") == "number")
    assert (spend["minimum"], spend["maximum"]) == (0, 1000)
    years = next(v for v in variants(props["years"]) if v.get("type") == "integer")
    assert (years["minimum"], years["maximum"]) == (0, 50)
    kind = next(v for v in variants(props["kind"]) if "enum" in v)
    assert kind["enum"] == ["company", "public"]
    tags = next(v for v in variants(props["tags"]) if v.get("type") == "array")
    assert tags["items"]["enum"] == ["a", "b", "c"]
    assert any(v.get("type") == "boolean" for v in variants(props["active"]))


@pytest.mark.parametrize(
    ("type_", "text", "want"),
    [
        ("integer", "3", 3),
        ("number", "1,200.5", 1200.5),
        ("number", "2000", 2000),
        ("boolean", "yes", True),
        ("boolean", "否", False),
        ("list", "a; b;", ["a", "b"]),
        ("string", " x ", "x"),
        ("number", "", None),
    ],
)
def test_csv_cells_are_coerced_by_type(type_, text, want):
    values = ["a", "b"] if type_ == "list" else None
    decl = FactDecl(type=type_, values=values)
    got = F.coerce_text(decl, text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    ("type_", "text"), [("integer", "3.5"), ("number", "abc"), ("boolean", "maybe")]
)
def test_csv_cells_of_the_wrong_type_are_refused(type_, text):
    with pytest.raises(ValueError):
        F.coerce_text(FactDecl(type=type_), text)
