"""Stage "order": rules and decision steps ordered into levels by the outcomes they read.

Each case breaks one line of ``tests/fixtures/invalid/base.yaml`` (a valid ruleset) so the
expected location can be read off that file. Tests match codes and locations, never text.
"""

from __future__ import annotations

import pytest
from builders import WHEN_SPEND, assert_located

# (code, old line, new text, line, col, hint must contain or None)
CASES = [
    ("ruleset.outcome_cycle", WHEN_SPEND, "    when: score >= 10", 24, 3, None),
]


@pytest.mark.parametrize(
    ("code", "old", "new", "line", "col", "hint"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_code_is_reported_at_its_line_and_col(code, old, new, line, col, hint):
    assert_located(code, old, new, line, col, hint)
