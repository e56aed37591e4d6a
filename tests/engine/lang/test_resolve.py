"""Stage "resolve": every name declared once, lower_snake_case, not a reserved word.

Each case breaks one line of ``tests/fixtures/invalid/base.yaml`` (a valid ruleset) so the
expected location can be read off that file. Tests match codes and locations, never text.
"""

from __future__ import annotations

import pytest
from builders import assert_located

# (code, old line, new text, line, col, hint must contain or None)
CASES = [
    (
        "ruleset.bad_name",
        "  years: {type: integer, min: 0}",
        "  Years: {type: integer, min: 0}",
        15,
        3,
        None,
    ),
    ("ruleset.reserved_name", "  label: {value: gold}", "  score: {value: 3}", 20, 3, "another"),
    ("ruleset.reserved_name", "  label: {value: gold}", "  sid: {value: 3}", 20, 3, "another"),
    ("ruleset.duplicate_name", "  label: {value: gold}", "  years: {value: 3}", 20, 3, None),
]


@pytest.mark.parametrize(
    ("code", "old", "new", "line", "col", "hint"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_code_is_reported_at_its_line_and_col(code, old, new, line, col, hint):
    assert_located(code, old, new, line, col, hint)
