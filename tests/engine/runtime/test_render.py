"""Message rendering: values formatted by unit and language; placeholders checked."""

from __future__ import annotations

import pytest

from engine.lang.templates import placeholders
from engine.runtime.render import compile_template, format_value, quantity, render


@pytest.mark.parametrize(
    ("value", "en", "zh"),
    [
        (12_000_000, "¥12,000,000", "1,200万元"),
        (350_000_000, "¥350,000,000", "3.5亿元"),
        (1e8, "¥100,000,000", "1亿元"),
        (123_456_789, "¥123,456,789", "1.23亿元"),
        (15_000, "¥15,000", "1.5万元"),
        (9_999, "¥9,999", "9,999元"),
        (1234.5, "¥1,234.5", "1,234.5元"),
        (0, "¥0", "0元"),
        (-2_500_000, "-¥2,500,000", "-250万元"),
    ],
)
def test_money_in_english_and_chinese(value, en, zh):
    assert format_value(value, "money", "en") == en
    assert format_value(value, "money", "zh") == zh


def test_money_in_other_currencies():
    assert format_value(1_000, "money", "en", "USD") == "$1,000"
    assert format_value(20_000, "money", "zh", "USD") == "2万美元"
    assert format_value(5, "money", "en", "CHF") == "CHF 5"


@pytest.mark.parametrize(
    ("value", "text"), [(12.5, "12.5%"), (12.54, "12.5%"), (3, "3%"), (-0.24, "-0.2%")]
)
def test_percent_to_one_decimal(value, text):
    assert format_value(value, "percent", "en") == text
    assert format_value(value, "percent", "zh") == text


@pytest.mark.parametrize(("value", "text"), [(0.83, "0.83"), (0.8333, "0.83"), (1, "1.00")])
def test_ratio_to_two_decimals(value, text):
    assert format_value(value, "ratio", "en") == text


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(12345, "count", "12,345"), (80, "points", "80"), (2.5, None, "2.5")],
)
def test_plain_numbers(value, unit, text):
    assert format_value(value, unit, "en") == text
    assert format_value(value, None, "zh") == text


@pytest.mark.parametrize(
    ("value", "unit", "en", "zh"),
    [
        (3, "years", "3 years", "3年"),
        (1, "years", "1 year", "1年"),
        (2.5, "years", "2.5 years", "2.5年"),
        (0, "count", "none", "没有"),  # a count of 0 as "no" / 没有 (policy §8)
        (1, "count", "1", "1"),
        (1, "account", "1 account", "1个客户"),
        (2000, "account", "2,000 accounts", "2,000个客户"),
    ],
)
def test_numbers_with_their_unit(value, unit, en, zh):
    assert format_value(value, unit, "en") == en
    assert format_value(value, unit, "zh") == zh


@pytest.mark.parametrize(
    ("value", "en", "zh"),
    [
        (["a", "b", "c"], "a, b and c", "a、b和c"),
        (["a", "b"], "a and b", "a和b"),
        (["a"], "a", "a"),
        ([], "none", "无"),
    ],
)
def test_lists_are_joined(value, en, zh):
    assert format_value(value, None, "en") == en
    assert format_value(value, None, "zh") == zh


def test_unknown_booleans_and_strings():
    assert format_value(None, "money", "en") == "unknown"
    assert format_value(None, "money", "zh") == "未知"
    assert format_value(True, None, "en") == "yes"
    assert format_value(False, None, "zh") == "否"
    assert format_value("commercial", None, "zh") == "commercial"


def test_render_fills_placeholders_by_unit_and_language():
    units = {"spend": "money", "margin": "percent", "tags": None}
    values = {"spend": 12_000_000, "margin": 7.24, "tags": ["x", "y", "z"]}
    template = "{spend} at {margin}: {tags}; exact {spend:raw}; {missing}"
    assert render(template, values, units, "en") == (
        "¥12,000,000 at 7.2%: x, y and z; exact 12000000; unknown"
    )
    assert render(template, values, units, "zh") == (
        "1,200万元 at 7.2%: x、y和z; exact 12000000; 未知"
    )


def test_render_uses_labels_for_outcome_values():
    labels = {"qualification": {"good": {"en": "good account", "zh": "好客户"}}}
    labels["segments"] = {"big": {"en": "big spender", "zh": "大额"}}
    values = {"qualification": "good", "segments": ["big", "other"]}
    assert render("{qualification}; {segments}", values, {}, "en", labels=labels) == (
        "good account; big spender and other"
    )
    assert render("{qualification}", values, {}, "zh", labels=labels) == "好客户"


def test_render_keeps_literal_braces():
    assert render("{{x}} {n}", {"n": 1}, {}, "en") == "{x} 1"


def test_placeholders_lists_names_and_specs():
    assert placeholders("a {x} b {y:raw} {{z}}") == [("x", ""), ("y", "raw")]


@pytest.mark.parametrize("template", ["{x!r}", "{x.y}", "{x[0]}", "{x:.2f}", "{x", "}"])
def test_placeholders_refuses_what_render_cannot_do(template):
    with pytest.raises(ValueError):
        placeholders(template)


# --------------------------------------------------------------------------- unit words

VOLUME = {"en": ("unit", "units"), "zh": ("套", "套")}
MEETINGS = {"zh": ("次", "次")}  # the English label names the thing: no English word


@pytest.mark.parametrize(
    ("value", "word", "unit", "en", "zh"),
    [
        (0, MEETINGS, "count", "0", "0次"),  # a change from it: "from 0 to 1", never "none"
        (1, MEETINGS, "count", "1", "1次"),
        (1, VOLUME, None, "1 unit", "1套"),
        (0, VOLUME, None, "0 units", "0套"),
        (2, VOLUME, None, "2 units", "2套"),
        (1.5, VOLUME, None, "1.5 units", "1.5套"),
        (500_000, VOLUME, None, "500,000 units", "50万套"),  # the seed's 「50万套」
        (236_800, VOLUME, None, "236,800 units", "23.68万套"),
        (3, None, "count", "3", "3"),
    ],
)
def test_a_quantity_reads_in_figures_with_its_unit_word(value, word, unit, en, zh) -> None:
    assert quantity(value, unit, "en", word=word) == en
    assert quantity(value, unit, "zh", word=word) == zh


def test_a_value_in_a_sentence_keeps_a_count_of_0_as_none() -> None:
    # 「除了大客户经理，没有……」: format_value says "none" for a count of 0, with a word or not
    assert format_value(0, "count", "zh", word=MEETINGS) == "没有"
    assert format_value(0, "count", "en", word=MEETINGS) == "none"
    assert format_value(3, "count", "zh", word=MEETINGS) == "3次"
    assert format_value(3, "count", "en", word=MEETINGS) == "3"  # no English word declared
    assert format_value(None, None, "zh", word=VOLUME) == "未知"


def test_a_word_placeholder_writes_the_word_and_a_plain_one_does_not() -> None:
    units = {"v": None, "n": "count"}
    words = {"v": VOLUME, "n": MEETINGS}
    values = {"v": 1200, "n": 3}
    for template, lang, want in [
        ("{v:word}, {n}次", "zh", "1,200套, 3次"),
        ("{v:word}; {v}", "en", "1,200 units; 1,200"),
        ("{v:word} and {n:word}", "zh", "1,200套 and 3次"),
    ]:
        assert render(template, values, units, lang, words=words) == want
        fill = compile_template(template, units, lang, words=words)
        assert fill(values) == want
        assert fill({"v": 1, "n": 3}) == want.replace("1,200 units", "1 unit").replace("1,200", "1")
