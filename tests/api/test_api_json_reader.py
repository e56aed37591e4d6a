"""The JSON reader's fast path (orjson) answers exactly as the strict reader does: the same
value, of the same types, or the same error, for every document — well-formed or not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.bodies import JsonLimits, _parse_strict, parse_json
from api.errors import ApiError

LIMITS = JsonLimits(max_depth=4, max_string_chars=12)


def outcome(read: Any, body: bytes) -> tuple[str, Any]:
    try:
        value = read(body, LIMITS)
    except ApiError as exc:
        return ("error", (type(exc).__name__, exc.status, exc.to_problem()))
    return ("value", typed(value))


def typed(value: Any) -> Any:
    """The value with every scalar's type kept (1 and 1.0 and True differ)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, repr(value))


def same(body: bytes) -> None:
    assert outcome(parse_json, body) == outcome(_parse_strict, body), body


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=14), inner),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_documents_read_the_same(doc: Any) -> None:
    same(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    same(json.dumps(doc).encode("ascii"))  # \u escapes


@settings(max_examples=600, deadline=None)
@given(documents, st.data())
def test_mangled_documents_fail_or_read_the_same(doc: Any, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        byte = data.draw(st.sampled_from(b'{}[],:"\\ 0-eE.\x00\xff\xc3'))
        if raw and data.draw(st.booleans()):
            raw[at] = byte
        else:
            raw.insert(at, byte)
    same(bytes(raw))


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',  # a key given twice
        b'{"a" : 1, "a": 2}',  # ... with white space before one colon (the byte count misses it)
        b'{"a":1,"a"\n:2}',
        b"[1, 18446744073709551615, 18446744073709551616, -9223372036854775809]",
        b'{"a": {"b": 1, "b": 1}}',
        b'{"a": "x\\":", "b": 1}',  # a string that fools the key count
        b'{"a": 123456789012345678901234567890}',  # beyond 64 bits: an exact int
        b'{"a": 1e400}',
        b'{"a": NaN}',
        b"\xef\xbb\xbf{}",  # BOM
        b'{"a": "\\ud800"}',  # unpaired surrogate
        b'{"a": "' + b"x" * 13 + b'"}',  # longer than the limit
        b'{"' + b"k" * 13 + b'": 1}',
        b"[[[[[1]]]]]",  # deeper than the limit
        b"",
        b"   ",
        b"\xff",
        b'"just a string that is too long"',
        b'{"a": -0, "b": 0.0, "c": 1.0e-400}',
        b"{}",
    ],
)
def test_edge_cases_read_the_same(body: bytes) -> None:
    same(body)
