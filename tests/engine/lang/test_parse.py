"""The parse stage: YAML read with positions, bounded before anything is built from it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import FIXTURES, assert_located

import engine
from engine import RulesetError
from engine.lang.source import MAX_ALIASES, plain, read_yaml

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

FIXTURES = FIXTURES / "invalid"
BASE = (FIXTURES / "base.yaml").read_text(encoding="utf-8")


def alias_bomb(levels: int, fan: int = 10) -> str:
    """`levels` anchors, each a list of `fan` aliases of the one before: fan**levels values."""
    lines = ["kaq: 1", "a0: &a0 [" + ", ".join(["x"] * fan) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 9])
def test_alias_bomb_is_refused_at_its_line_within_a_second(levels: int) -> None:
    text = alias_bomb(levels)
    assert len(text.encode()) < 1300  # the audit's ruleset was 1.2 KB
    started = time.perf_counter()
    src, diags = read_yaml("bomb.yaml", text)
    elapsed = time.perf_counter() - started
    assert src is None
    assert [(d.code, d.line) for d in diags] == [("yaml.too_large", levels + 2)]
    assert elapsed < 1.0


def test_alias_bomb_through_prepare_is_a_ruleset_error_not_a_memory_error() -> None:
    with pytest.raises(RulesetError) as info:
        engine.prepare("bomb.yaml", alias_bomb(9))
    assert [d.code for d in info.value.diagnostics] == ["yaml.too_large"]


def test_kaq_check_on_an_alias_bomb_answers_at_once(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb(9), encoding="utf-8")
    kaq = Path(sys.executable).parent / "kaq"
    started = time.perf_counter()
    out = subprocess.run(
        [str(kaq), "check", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "bomb.yaml:11:10: yaml.too_large:" in out.stderr
    assert time.perf_counter() - started < 20  # the process start dominates; it grew to GBs


def test_too_many_aliases_are_refused_at_the_first_one_over_the_limit() -> None:
    items = "\n".join(f"  - *one  # {i}" for i in range(MAX_ALIASES + 1))
    text = f"kaq: 1\nbase: &one [1]\nuses:\n{items}\n"
    _src, diags = read_yaml("many.yaml", text)
    assert [(d.code, d.line, d.col) for d in diags] == [
        ("yaml.too_many_aliases", 4 + MAX_ALIASES, 5)
    ]


def test_a_few_aliases_are_fine() -> None:
    src, diags = read_yaml("ok.yaml", "kaq: 1\nbase: &one [1, 2]\na: *one\nb: *one\n")
    assert diags == [] and src is not None
    assert plain(src.doc) == {"kaq": 1, "base": [1, 2], "a": [1, 2], "b": [1, 2]}


def test_an_anchored_boolean_stays_a_boolean() -> None:
    src, _ = read_yaml("b.yaml", "kaq: 1\non: &yes true\nalso: *yes\noff: false\n")
    assert src is not None
    data = plain(src.doc)
    assert data == {"kaq": 1, "on": True, "also": True, "off": False}
    assert all(type(data[k]) is bool for k in ("on", "also", "off"))


def test_a_param_written_as_an_anchored_boolean_works_as_a_condition() -> None:
    """`{value: &on true}` used as `when: strict` was refused as "a number"."""
    text = BASE.replace(
        "  label: {value: gold}", "  label: {value: gold}\n  strict: {value: &on true}"
    ).replace("    when: kind == 'public'", "    when: strict and kind == 'public'")
    rs = engine.prepare("b.yaml", text)
    try:
        v = rs.evaluate({"account_id": "A", "kind": "public"})
        assert [g["rule"] for g in v["guardrails"]] == ["guard.kind"]
    finally:
        rs.close()


# (code, old line, new text, line, col, hint must contain or None)
BROKEN_LINES = [
    ("yaml.syntax", "  good: {en: good, zh: 好}", "  good: {en: good, zh: 好", 7, 7, None),
    ("yaml.syntax", "kaq: 1", "kaq: 1\n\tname: x", 3, 1, None),
    ("yaml.duplicate_key", 'version: "1"', 'version: "1"\nname: again', 5, 1, "unique"),
]


@pytest.mark.parametrize(
    ("code", "old", "new", "line", "col", "hint"),
    BROKEN_LINES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(BROKEN_LINES)],
)
def test_each_yaml_code_is_reported_at_its_line_and_col(code, old, new, line, col, hint):
    assert_located(code, old, new, line, col, hint)
