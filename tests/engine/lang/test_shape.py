"""Stage "shape": the document against the ruleset models, every problem located.

Each case breaks one line of ``tests/fixtures/invalid/base.yaml`` (a valid ruleset) so the
expected location can be read off that file. Tests match codes and locations, never text.
"""

from __future__ import annotations

import pytest
from builders import assert_located

# (code, old line, new text, line, col, hint must contain or None)
CASES = [
    ("ruleset.unknown_key", "    when: years == 0", "    wehn: years == 0", 36, 5, "`when`"),
    ("ruleset.unknown_key", "    weight: 50", "    weight: 50\n    wieght: 3", 27, 5, "`weight`"),
    ("ruleset.missing_key", 'version: "1"\n', "", 2, 1, None),
    ("ruleset.missing_key", "    when: years == 0\n", "", 33, 5, None),
    ("ruleset.shape", "kaq: 1", "kaq: 2", 2, 6, None),
    (
        "ruleset.shape",
        "  years: {type: integer, min: 0}",
        "  years: {type: integr, min: 0}",
        15,
        17,
        None,
    ),
    ("ruleset.shape", "    weight: 50", "    weight: 50\n    segment: big", 24, 5, None),
]


@pytest.mark.parametrize(
    ("code", "old", "new", "line", "col", "hint"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_code_is_reported_at_its_line_and_col(code, old, new, line, col, hint):
    assert_located(code, old, new, line, col, hint)
