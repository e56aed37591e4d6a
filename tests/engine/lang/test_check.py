"""Stage "check": expressions, templates, rules and decision steps type-checked.

Each case breaks one line of ``tests/fixtures/invalid/base.yaml`` (a valid ruleset) so the
expected location can be read off that file. Tests match codes and locations, never text.
"""

from __future__ import annotations

import pytest
from builders import MESSAGE, WHEN_KIND, WHEN_SPEND, assert_located

# (code, old line, new text, line, col, hint must contain or None)
CASES = [
    ("ruleset.duplicate_rule_id", "  - id: seg.big", "  - id: crit.spend", 29, 9, None),
    ("ruleset.unknown_param", "    weight: 50", "    weight: min_spnd", 26, 13, "`min_spend`"),
    ("ruleset.type", "    weight: 50", "    weight: label", 26, 13, None),
    ("ruleset.type", "    weight: 50", "    weight: -5", 26, 13, None),
    ("ruleset.unknown_segment", "    segment: big", "    segment: bgi", 31, 14, "`big`"),
    ("ruleset.unknown_stage", "    stage: new", "    stage: nwe", 35, 12, "`new`"),
    (
        "ruleset.unknown_qualification",
        "      qualification: good",
        "      qualification: goood",
        46,
        22,
        "`good`",
    ),
    (
        "ruleset.unknown_placeholder",
        MESSAGE,
        MESSAGE.replace("{annual_spend}.", "{anual_spend}."),
        28,
        19,
        "`annual_spend`",
    ),
    (
        "ruleset.unknown_placeholder",
        MESSAGE,
        '    message:\n      met: {en: "Spend {anual_spend}.", zh: "x"}',
        29,
        17,
        "`annual_spend`",
    ),
    (
        "ruleset.bad_template",
        MESSAGE,
        MESSAGE.replace("{annual_spend}.", "{annual_spend:.2f}."),
        28,
        19,
        "{{",
    ),
    (
        "ruleset.bad_template",
        MESSAGE,
        MESSAGE.replace("{annual_spend}.", "{annual_spend."),
        28,
        19,
        "{{",
    ),
    (
        "ruleset.derived_cycle",
        "  lifetime: {expr: annual_spend * years}",
        "  lifetime: {expr: annual_spend * span}\n  span: {expr: lifetime + 1}",
        22,
        20,
        None,
    ),
    (
        "ruleset.decision_unreachable",
        "    - when: score >= 50\n",
        "    - qualification: poor\n    - when: score >= 50\n",
        45,
        7,
        "end",
    ),
    (
        "ruleset.decision_incomplete",
        "    - qualification: poor",
        "    - when: score < 50\n      qualification: poor",
        47,
        7,
        "final step",
    ),
    (
        "ruleset.escalation_not_higher",
        "{severity: high, when:",
        "{severity: warning, when:",
        42,
        20,
        None,
    ),
    ("expr.syntax", WHEN_SPEND, "    when: annual_spend >= ", 27, 11, None),
    ("expr.syntax", WHEN_SPEND, "    when: 'annual_spend >= min_spend )'", 27, 38, None),
    ("expr.disallowed", WHEN_SPEND, "    when: annual_spend ** 2 >= min_spend", 27, 11, "+ - * /"),
    (
        "expr.disallowed",
        WHEN_SPEND,
        "    when: annual_spend >= min_spend if true else false",
        27,
        11,
        None,
    ),
    ("expr.disallowed", WHEN_SPEND, "    when: annual_spend is min_spend", 27, 11, "=="),
    ("expr.disallowed", WHEN_SPEND, "    when: annual_spend == None", 27, 27, "known"),
    ("expr.disallowed", WHEN_SPEND, "    when: annual_spend > 1 and True", 27, 32, "true"),
    (
        "expr.unknown_name",
        WHEN_SPEND,
        "    when: anual_spend >= min_spend",
        27,
        11,
        "`annual_spend`",
    ),
    (
        "expr.unknown_name",
        WHEN_SPEND,
        '    when: "annual_spend >= mni_spend"',
        27,
        28,
        "`min_spend`",
    ),
    (
        "expr.unknown_name",
        "    when: years == 0",
        "    applies_when: yeras > 1\n    when: years == 0",
        36,
        19,
        "`years`",
    ),
    ("expr.unknown_name", "    - when: score >= 50", "    - when: scroe >= 50", 45, 13, "`score`"),
    (
        "expr.unknown_function",
        WHEN_SPEND,
        "    when: mni(annual_spend, 3) >= min_spend",
        27,
        11,
        "`min`",
    ),
    (
        "expr.unknown_function",
        WHEN_SPEND,
        "    when: sqrt(annual_spend) >= min_spend",
        27,
        11,
        "allowed",
    ),
    ("expr.type", WHEN_KIND, "    when: kind == 'pubic'", 40, 11, "`public`"),
    ("expr.type", WHEN_KIND, "    when: kind > 3", 40, 11, None),
    ("expr.type", WHEN_KIND, "    when: kind in ['public', 'privat']", 40, 11, None),
    ("expr.type", WHEN_KIND, "    when: count(tags, ['a', 'c']) > 1", 40, 11, None),
    ("expr.type", WHEN_KIND, "    when: annual_spend + 1", 40, 11, None),
    ("expr.type", WHEN_KIND, "    when: kind == 'public' and years", 40, 32, None),
    ("expr.type", "when: \"'a' in tags\"}", "when: \"'e' in tags\"}", 42, 33, None),
    ("expr.call", WHEN_SPEND, "    when: min(annual_spend) >= min_spend", 27, 11, None),
    ("expr.call", WHEN_SPEND, "    when: at_least(3, years > 1, kind == 'public')", 27, 11, None),
    ("expr.call", WHEN_SPEND, "    when: len(years) > 1", 27, 11, None),
    ("expr.call", WHEN_SPEND, "    when: known(years + 1)", 27, 11, None),
    (
        "expr.too_large",
        WHEN_SPEND,
        "    when: " + " + ".join(["years"] * 120) + " > 1",
        27,
        11,
        "derived",
    ),
    (
        "expr.too_large",
        WHEN_SPEND,
        "    when: " + "abs(" * 30 + "years" + ")" * 30 + " > 1",
        27,
        11,
        None,
    ),
    ("expr.empty", WHEN_SPEND, "    when: ''", 27, 12, None),
]


@pytest.mark.parametrize(
    ("code", "old", "new", "line", "col", "hint"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_code_is_reported_at_its_line_and_col(code, old, new, line, col, hint):
    assert_located(code, old, new, line, col, hint)
