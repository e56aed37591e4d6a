"""`engine.tools.fmt`: canonical key order, 2-space indent, comments kept, idempotent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from builders import ROOT

from engine.tools.fmt import FmtError, format_file, format_text

MESSY = """\
# a ruleset header comment
name: demo   # the name
kaq: 1
rules:
    -   when: "x > 1"   # why this threshold
        kind: segment
        id: segment.big
        segment: big

    # --- stage rules
    -   id: stage.first
        stage: first
        message:
            zh: 你好
            en: hello
        kind: stage
        when: "not y"
    -   kind: guardrail
        id: guard.b
        when: z
        severity: warning
facts:
    x: {type: number, unit: money, min: 0}
    y:
        description: {zh: 说明, en: a fact}
        type: boolean
params:
    p: {unit: points, value: 70}
version: "1"
"""


def _comments(text: str) -> list[str]:
    return sorted(line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line)


def test_keys_follow_the_documented_order() -> None:
    out = format_text(MESSY)
    top = [line.split(":")[0] for line in out.splitlines() if line and line[0].isalpha()]
    assert top == ["kaq", "name", "version", "facts", "params", "rules"]
    assert "  - id: segment.big\n    kind: segment\n    segment: big\n    when:" in out
    assert "  y:\n    type: boolean\n    description: {en: a fact, zh: 说明}" in out
    assert "p: {value: 70, unit: points}" in out
    assert "message:\n      en: hello\n      zh: 你好" in out


def test_rule_order_is_kept() -> None:
    out = format_text(MESSY)
    assert out.index("segment.big") < out.index("stage.first") < out.index("guard.b")


def test_comments_are_kept_in_place() -> None:
    out = format_text(MESSY)
    assert _comments(out) == _comments(MESSY)
    assert re.search(r'\n    when: "x > 1" +# why this threshold\n', out)
    # The section comment stays between the two rules even though the last key moved.
    assert re.search(r"# why this threshold\n\n *# --- stage rules\n  - id: stage.first\n", out)


def test_two_space_indent_with_dashes_under_the_parent_key() -> None:
    out = format_text(MESSY)
    assert "\nrules:\n  - id: segment.big\n    kind: segment\n" in out


def test_formatting_is_idempotent() -> None:
    once = format_text(MESSY)
    assert format_text(once) == once


@pytest.mark.parametrize("name", ["key-account.yaml", "key-account.tests.yaml"])
def test_shipped_files_format_idempotently_and_keep_every_comment(name: str) -> None:
    text = (ROOT / "rulesets" / name).read_text(encoding="utf-8")
    once = format_text(text, name)
    assert format_text(once, name) == once
    assert _comments(once) == _comments(text)


def test_test_case_files_get_their_own_order() -> None:
    text = "cases:\n  - want: {score: 1, qualification: key_account}\n    note: n\nruleset: x\n"
    out = format_text(text, "x.tests.yaml")
    assert (
        out == "ruleset: x\ncases:\n  - note: n\n    want: {qualification: key_account, score: 1}\n"
    )


def test_other_yaml_is_left_alone() -> None:
    text = "b: 1\na:    2\n"
    assert format_text(text, "other.yaml") == text


def test_format_file_reports_change_and_check_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(MESSY, encoding="utf-8")
    assert format_file(path, check=True).changed
    assert path.read_text(encoding="utf-8") == MESSY
    assert format_file(path).changed
    assert not format_file(path).changed


def test_broken_yaml_is_a_located_error() -> None:
    with pytest.raises(FmtError, match=r"^bad\.yaml:\d+:\d+: yaml\.syntax"):
        format_text("kaq: 1\nname: [unclosed\n", "bad.yaml")
