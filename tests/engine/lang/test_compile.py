"""The compile pipeline: every problem of a stage at once, sorted, in file:line:col form."""

from __future__ import annotations

import pytest
from builders import BASE, WHEN_KIND, WHEN_SPEND, broken, diagnostics, located

import engine


def test_base_fixture_is_valid():
    rs = engine.prepare("b.yaml", BASE)
    try:
        v = rs.evaluate({"account_id": "A", "annual_spend": 2000, "years": 0, "kind": "public"})
        assert v["qualification"] == "good"
    finally:
        rs.close()


# (code, old line, new text, line, col, hint must contain or None)


def test_yaml_that_is_not_a_mapping_is_reported_at_the_start():
    assert located(diagnostics("- a\n- b\n")) == [("yaml.not_a_mapping", 1, 1)]


def test_empty_file_is_not_a_mapping():
    assert located(diagnostics("")) == [("yaml.not_a_mapping", 1, 1)]


def test_oversized_file_is_refused_before_parsing():
    assert located(diagnostics(BASE + "#" * 2_100_000)) == [("yaml.too_large", 1, 1)]


def test_single_problem_gives_single_diagnostic():
    diags = diagnostics(broken(WHEN_SPEND, "    when: anual_spend >= min_spend"))
    assert located(diags) == [("expr.unknown_name", 27, 11)]


def test_all_problems_of_a_stage_are_reported_at_once_and_sorted():
    text = (
        BASE.replace("    segment: big", "    segment: bgi")
        .replace(WHEN_SPEND, "    when: anual_spend >= min_spend")
        .replace("      qualification: good", "      qualification: goood")
        .replace(WHEN_KIND, "    when: kind == 'pubic'")
    )
    diags = diagnostics(text)
    assert located(diags) == [
        ("expr.unknown_name", 27, 11),
        ("ruleset.unknown_segment", 31, 14),
        ("expr.type", 40, 11),
        ("ruleset.unknown_qualification", 46, 22),
    ]
    assert diags == sorted(diags)


def test_all_shape_problems_are_reported_at_once_and_sorted():
    text = BASE.replace("kaq: 1", "kaq: 2").replace("    when: years == 0", "    wehn: years == 0")
    assert located(diagnostics(text)) == [
        ("ruleset.shape", 2, 6),
        ("ruleset.missing_key", 33, 5),
        ("ruleset.unknown_key", 36, 5),
    ]


def test_ruleset_error_message_lists_file_line_col_code():
    diags = diagnostics(broken(WHEN_SPEND, "    when: anual_spend >= min_spend"), file="x/k.yaml")
    assert str(diags[0]).startswith("x/k.yaml:27:11: expr.unknown_name: ")
    assert diags[0].to_dict()["code"] == "expr.unknown_name"


def test_ruleset_error_is_a_kaq_error_with_code():
    with pytest.raises(engine.KaqError) as info:
        engine.prepare("b.yaml", "kaq: 2")
    assert info.value.code == "ruleset.invalid"


@pytest.mark.parametrize(
    ("old", "new", "code", "line", "col"),
    [
        # never decidable: a division by a literal or param zero
        (WHEN_SPEND, "    when: annual_spend > 1 / 0", "expr.division_by_zero", 27, 26),
        (
            WHEN_SPEND,
            "    when: annual_spend / (min_spend - 1000) > 1",
            "expr.division_by_zero",
            27,
            11,
        ),
        # a threshold finer than derived values are rounded to
        (
            "    when: lifetime > 10 * min_spend",
            "    when: lifetime > 0.0000001",
            "expr.precision",
            32,
            11,
        ),
    ],
)
def test_conditions_that_cannot_mean_what_they_say_are_warned_about(old, new, code, line, col):
    rs = engine.prepare("b.yaml", broken(old, new))
    try:
        found = [(d.code, d.line, d.col) for d in rs.warnings if d.code.startswith("expr.")]
        assert found == [(code, line, col)]
    finally:
        rs.close()


def test_a_fine_threshold_on_an_input_fact_is_not_warned_about():
    # input facts are compared exactly, so a threshold finer than 6 decimals means what it says
    rs = engine.prepare("b.yaml", broken(WHEN_SPEND, "    when: annual_spend > 0.0000001"))
    try:
        assert [d for d in rs.warnings if d.code.startswith("expr.")] == []
    finally:
        rs.close()
