"""engine.tools.studio (check, form with spans, shipped corpus) and the studio's shortcuts
into engine.tools.impact.analyze (served verdicts kept, sides given prepared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import load_rulesets_from_sources
from engine.tools.impact import RulesetSide, analyze, load_corpus
from engine.tools.studio import check_source, form_of, shipped_corpus, unit_range

ROOT = Path(__file__).resolve().parents[3]
SOURCE = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
AT_75 = SOURCE.replace(
    "  key_account_min_score:\n    value: 70\n", "  key_account_min_score:\n    value: 75\n"
)


def test_check_source_of_the_default_ruleset_is_clean() -> None:
    result = check_source("key-account", SOURCE)
    assert result.ok and result.diagnostics == [] and result.compiled is not None


def test_check_source_reports_errors_with_severity_and_never_raises() -> None:
    for text in (
        "",
        "[",
        "kaq: 2\n",
        "\t\x00",
        "a: *nowhere\n",
        SOURCE.replace("value: 70", "value: x", 1),
    ):
        result = check_source("key-account", text)
        assert not result.ok and result.diagnostics
        assert {d["severity"] for d in result.diagnostics} == {"error"}
        assert all(d["line"] >= 1 and d["col"] >= 1 and d["code"] for d in result.diagnostics)


def test_the_form_spans_cover_exactly_each_value() -> None:
    form = form_of(SOURCE)
    lines = SOURCE.splitlines()
    assert len(form["params"]) == 27
    for p in form["params"]:
        s = p["span"]
        assert s is not None, p["name"]
        written = lines[s["line"] - 1][s["col"] - 1 : s["end_col"] - 1]
        assert float(written) == p["value"], p["name"]
    assert form["messages"]
    for m in form["messages"]:
        for lang in ("en", "zh"):
            s = m[lang]["span"]
            written = lines[s["line"] - 1][s["col"] - 1 : s["end_col"] - 1]
            assert json.loads(written) == m[lang]["value"]


def test_a_form_edit_at_its_span_changes_that_value_alone() -> None:
    form = form_of(SOURCE)
    p = next(p for p in form["params"] if p["name"] == "max_acquisition_ratio")
    lines = SOURCE.splitlines(keepends=True)
    line = lines[p["span"]["line"] - 1]
    lines[p["span"]["line"] - 1] = (
        line[: p["span"]["col"] - 1] + "0.25" + line[p["span"]["end_col"] - 1 :]
    )
    edited = "".join(lines)
    again = next(q for q in form_of(edited)["params"] if q["name"] == "max_acquisition_ratio")
    assert again["value"] == 0.25 and check_source("key-account", edited).ok
    assert edited.count("\n") == SOURCE.count("\n") and "#  Params: every threshold" in edited


@pytest.mark.parametrize(
    ("line", "start", "end"),
    [
        ('  v: "a \\" b" # c', 5, 13),
        ("  v: 'it''s' # c", 5, 12),
        ("  v: 12   # c", 5, 7),
        ("{v: 3, u: x}", 4, 5),
        ("  v: |", 5, None),
        ('  v: "open', 5, None),
    ],
)
def test_scalar_ends(line: str, start: int, end: int | None) -> None:
    from engine.tools.studio import _scalar_end

    assert _scalar_end(line, start) == end


def test_unit_ranges() -> None:
    assert unit_range("percent") == {"min": 0, "max": 100, "integer": False}
    assert unit_range("count") == {"min": 0, "max": None, "integer": True}
    assert unit_range(None) is None


def test_the_shipped_corpus_is_the_file_of_the_repository() -> None:
    assert shipped_corpus() == load_corpus(ROOT / "corpus" / "accounts-2000.jsonl")


def test_analyze_with_known_verdicts_and_prepared_sides_gives_the_same_report() -> None:
    accounts = shipped_corpus()[:300]
    base = RulesetSide("base", {"key-account.yaml": SOURCE})
    head = RulesetSide("head", {"key-account.yaml": AT_75})
    plain = analyze(base, head, accounts)
    known: dict = {}
    served = load_rulesets_from_sources(base.sources)["key-account"]
    edited = load_rulesets_from_sources(head.sources)["key-account"]
    try:
        first = analyze(
            base, head, accounts, known=known, prepared={"base": served, "head": edited}
        )
        assert set(known) == {served.digest, edited.digest}
        second = analyze(base, head, accounts, known=known, prepared={"base": served})
        for report in (first, second):
            for key in (
                "changed",
                "qualification_moved",
                "transitions",
                "changes",
                "top",
                "changed_accounts",
                "guardrails",
                "scores",
            ):
                assert report[key] == plain[key], key
        served.decide({"account_id": "still-open"})  # a given side is not closed by analyze
    finally:
        served.close()
        edited.close()
