"""A fact's `unit_word`: checked at its line like every other field, and compiled per name.

The cases break one line of ``tests/fixtures/invalid/base.yaml`` (a valid ruleset), as
`test_shape.py` and `test_check.py` do; the line a problem is reported at is the line of the
`unit_word` (or of the template that misuses it), read off that file.
"""

from __future__ import annotations

import pytest
from builders import BASE, MESSAGE, ROOT, assert_located, broken, diagnostics, located

import engine
from engine.lang.model import UnitWord, plural

YEARS = "  years: {type: integer, min: 0}"
# `years` in block style: its unit_word is on line 18 of the broken file
YEARS_BLOCK = "  years:\n    type: integer\n    min: 0\n    unit_word: "

# (code, old line, new text, line, col, hint must contain or None)
CASES = [
    # neither language
    ("ruleset.shape", YEARS, YEARS_BLOCK + "{}", 18, 16, None),
    ("ruleset.shape", YEARS, "  years: {type: integer, min: 0, unit_word: {}}", 15, 45, None),
    # a plural without the singular it is the plural of
    ("ruleset.shape", YEARS, YEARS_BLOCK + "{en_plural: years}", 18, 16, None),
    # kaq writes the space between the number and the word
    ("ruleset.shape", YEARS, YEARS_BLOCK + '{en: " year"}', 18, 21, None),
    ("ruleset.shape", YEARS, YEARS_BLOCK + '{zh: ""}', 18, 21, None),
    ("ruleset.unknown_key", YEARS, YEARS_BLOCK + "{zh: 年, plural: x}", 18, 24, "`en_plural`"),
    ("ruleset.shape", YEARS, YEARS_BLOCK + "次", 18, 16, None),  # not a mapping
    # a number only, and not one whose unit writes its own word (¥, %, 年)
    (
        "ruleset.shape",
        "  kind: {type: enum, values: [company, public]}",
        "  kind:\n    type: enum\n    values: [company, public]\n    unit_word: {zh: 家}",
        19,
        16,
        None,
    ),
    (
        "ruleset.shape",
        "  annual_spend: {type: number, min: 0, unit: money}",
        "  annual_spend:\n    type: number\n    unit: money\n    unit_word: {zh: 元}",
        17,
        16,
        None,
    ),
    (
        "ruleset.shape",
        "  label: {value: gold}",
        "  label:\n    value: gold\n    unit_word: {zh: 个}",
        22,
        16,
        None,
    ),
    (
        "ruleset.shape",
        "  lifetime: {expr: annual_spend * years}",
        "  lifetime:\n    expr: annual_spend > 0\n    unit_word: {zh: 个}",
        24,
        16,
        None,
    ),
    # `{name:word}` on a name with no word in that language
    (
        "ruleset.bad_template",
        MESSAGE,
        MESSAGE.replace("{annual_spend}.", "{annual_spend:word}."),
        28,
        19,
        "unit_word",
    ),
]


@pytest.mark.parametrize(
    ("code", "old", "new", "line", "col", "hint"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_a_malformed_unit_word_is_reported_at_its_line(code, old, new, line, col, hint):
    assert_located(code, old, new, line, col, hint)


def _with_years_word(message: str) -> str:
    base = broken(YEARS, "  years: {type: integer, min: 0, unit_word: {en: year, zh: 年}}")
    return broken(MESSAGE, message, base)


def test_a_template_that_writes_the_word_after_word_is_refused_at_its_line() -> None:
    # 「{years:word}年」 would read 「3年年」
    text = _with_years_word('    message: {en: "For {years}.", zh: "采购{years:word}年。"}')
    assert ("ruleset.doubled_unit_word", 28, 39) in located(diagnostics(text))  # the zh text
    text = _with_years_word('    message: {en: "For {years:word} years.", zh: "采购{years}年。"}')
    assert ("ruleset.doubled_unit_word", 28, 19) in located(diagnostics(text))


def test_a_template_may_write_the_word_itself_or_have_it_written() -> None:
    text = _with_years_word('    message: {en: "For {years:word}, yearly.", zh: "采购{years}年。"}')
    rs = engine.prepare("b.yaml", text)
    try:
        assert rs.compiled.program.words["years"] == {"en": ("year", "years"), "zh": ("年", "年")}
    finally:
        rs.close()


def test_the_unit_words_of_the_default_ruleset_are_compiled_per_name() -> None:
    rs = engine.load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    try:
        words = rs.compiled.program.words
    finally:
        rs.close()
    assert words["executive_meetings_per_year"] == {"zh": ("次", "次")}
    assert words["escalation_channels"] == {"zh": ("条", "条")}
    assert words["industry_references"] == {"zh": ("家", "家")}
    assert words["min_industry_references"] == {"zh": ("家", "家")}  # params too
    assert words["contract_volume"] == {"en": ("unit", "units"), "zh": ("套", "套")}
    assert words["prior_total_volume"] == words["contract_volume"]
    assert "annual_spend" not in words  # money writes its own word


@pytest.mark.parametrize(
    ("singular", "many"),
    [
        ("unit", "units"),
        ("box", "boxes"),
        ("branch", "branches"),
        ("bus", "buses"),
        ("facility", "facilities"),
        ("day", "days"),
        ("sales order", "sales orders"),
    ],
)
def test_the_english_plural_is_made_by_rule(singular: str, many: str) -> None:
    assert plural(singular) == many
    assert UnitWord(en=singular).forms()["en"] == (singular, many)


def test_an_irregular_plural_is_given() -> None:
    assert UnitWord(en="person", en_plural="people").forms() == {"en": ("person", "people")}


def test_the_base_fixture_declares_no_unit_word() -> None:
    assert "unit_word" not in BASE  # each case above adds the one it breaks
