"""Ruleset validation: every diagnostic code, located at its exact `line:col`, with its hint.

Each case breaks one line of ``tests/fixtures/invalid/base.yaml`` (a valid ruleset) so the
expected location can be read off that file. Tests match codes and locations, never text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine import RulesetError
from engine.runtime import prepared as prepared_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "invalid"
BASE = (FIXTURES / "base.yaml").read_text(encoding="utf-8")

WHEN_SPEND = "    when: annual_spend >= min_spend"
WHEN_KIND = "    when: kind == 'public'"
MESSAGE = '    message: {en: "Spend {annual_spend}.", zh: "采购额{annual_spend}。"}'


def broken(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def diagnostics(text: str, file: str = "b.yaml") -> list[engine.Diagnostic]:
    with pytest.raises(RulesetError) as info:
        engine.prepare(file, text).close()
    return info.value.diagnostics


def located(diags: list[engine.Diagnostic]) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.col) for d in diags]


def test_base_fixture_is_valid():
    rs = engine.prepare("b.yaml", BASE)
    try:
        v = rs.evaluate({"account_id": "A", "annual_spend": 2000, "years": 0, "kind": "public"})
        assert v["qualification"] == "good"
    finally:
        rs.close()


# (code, old line, new text, line, col, hint must contain or None)
CASES = [
    ("yaml.syntax", "  good: {en: good, zh: 好}", "  good: {en: good, zh: 好", 7, 7, None),
    ("yaml.syntax", "kaq: 1", "kaq: 1\n\tname: x", 3, 1, None),
    ("yaml.duplicate_key", 'version: "1"', 'version: "1"\nname: again', 5, 1, "unique"),
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
    ("ruleset.outcome_cycle", WHEN_SPEND, "    when: score >= 10", 24, 3, None),
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
    diags = diagnostics(broken(old, new))
    assert (code, line, col) in located(diags)
    if hint is not None:
        d = next(d for d in diags if (d.code, d.line, d.col) == (code, line, col))
        assert d.hint is not None and hint in d.hint
    assert all(d.file == "b.yaml" for d in diags)


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


# --------------------------------------------------------------------------- load_rulesets


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_rulesets_loads_every_valid_file(tmp_path):
    _write(tmp_path, "a.yaml", BASE.replace("name: broken", "name: first"))
    _write(tmp_path, "b.yml", BASE.replace("name: broken", "name: second"))
    _write(tmp_path, "first.tests.yaml", "not: a ruleset")
    loaded = engine.load_rulesets(tmp_path)
    try:
        assert sorted(loaded) == ["first", "second"]
    finally:
        for rs in loaded.values():
            rs.close()


def test_load_rulesets_duplicate_name_across_files_is_located_in_the_second(tmp_path):
    _write(tmp_path, "a.yaml", BASE)
    second = _write(tmp_path, "b.yaml", BASE)
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [(d.file, d.code, d.line, d.col) for d in info.value.diagnostics] == [
        (str(second), "ruleset.duplicate_name", 1, 1)
    ]


def test_load_rulesets_is_all_or_nothing_and_binds_nothing_when_a_file_fails(tmp_path, monkeypatch):
    closed: list[str] = []
    original = prepared_module.PreparedRuleset.close

    def spy(self):
        closed.append(self.name)
        original(self)

    monkeypatch.setattr(prepared_module.PreparedRuleset, "close", spy)
    _write(tmp_path, "a.yaml", BASE.replace("name: broken", "name: good-one"))
    bad = _write(tmp_path, "b.yaml", broken(WHEN_SPEND, "    when: anual_spend >= 1"))
    _write(
        tmp_path, "c.yaml", BASE.replace("name: broken", "name: other").replace("kaq: 1", "kaq: 3")
    )
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [(Path(d.file).name, d.code) for d in info.value.diagnostics] == [
        ("b.yaml", "expr.unknown_name"),
        ("c.yaml", "ruleset.shape"),
    ]
    assert info.value.diagnostics[0].file == str(bad)
    assert closed == []  # every file compiles before any is bound to the engine


def test_bind_rulesets_frees_what_it_bound_when_a_later_one_fails(tmp_path, monkeypatch):
    from engine.runtime import loader

    closed: list[str] = []
    original = prepared_module.PreparedRuleset.close

    def spy(self):
        closed.append(self.name)
        original(self)

    monkeypatch.setattr(prepared_module.PreparedRuleset, "close", spy)
    _write(tmp_path, "a.yaml", BASE.replace("name: broken", "name: first"))
    _write(tmp_path, "b.yaml", BASE.replace("name: broken", "name: second"))
    compiled = loader.compile_rulesets(loader.read_sources(tmp_path), base=tmp_path)
    real_bind = loader.bind

    def bind(c, path=None):
        if c.doc.name == "second":
            raise RulesetError([engine.Diagnostic("b.yaml", 1, 1, "ruleset.engine", "refused")])
        return real_bind(c, path)

    monkeypatch.setattr(loader, "bind", bind)
    with pytest.raises(RulesetError):
        loader.bind_rulesets(compiled)
    assert closed == ["first"]


def test_load_rulesets_from_sources_reports_every_file(tmp_path):
    sources = {
        "one.yaml": broken("    segment: big", "    segment: bgi"),
        "two.yaml": "- not a mapping",
    }
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets_from_sources(sources)
    assert [(d.file, d.code, d.line, d.col) for d in info.value.diagnostics] == [
        ("one.yaml", "ruleset.unknown_segment", 31, 14),
        ("two.yaml", "yaml.not_a_mapping", 1, 1),
    ]


def test_load_rulesets_of_a_missing_folder(tmp_path):
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path / "nope")
    assert [d.code for d in info.value.diagnostics] == ["ruleset.no_directory"]


def test_load_rulesets_of_an_empty_folder(tmp_path):
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [d.code for d in info.value.diagnostics] == ["ruleset.none"]


def test_load_rulesets_of_an_undecodable_file(tmp_path):
    (tmp_path / "a.yaml").write_bytes(b"kaq: 1\nname: \xff\xfe\n")
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [d.code for d in info.value.diagnostics] == ["ruleset.unreadable"]


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
