"""Paths and ruleset builders shared by the test packages (`import builders`).

`pyproject.toml` puts tests/ on the path (`[tool.pytest.ini_options] pythonpath`), so any
test module can use these instead of building its own small ruleset by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MINI = FIXTURES / "rulesets" / "mini.yaml"
#: a valid ruleset that the compile-stage tests break one line at a time
INVALID_BASE = FIXTURES / "invalid" / "base.yaml"
BASE = INVALID_BASE.read_text(encoding="utf-8")

ACCOUNT_ID = {"type": "string", "required": True}


def ruleset_doc(
    rules: list[dict[str, Any]],
    *,
    facts: dict[str, Any] | None = None,
    name: str = "t",
    **sections: Any,
) -> dict[str, Any]:
    """A minimal ruleset document: one qualification, `account_id` and the facts given."""
    doc: dict[str, Any] = {
        "kaq": 1,
        "name": name,
        "version": "1",
        "qualifications": {"q": {"en": "q", "zh": "q"}},
        "facts": {"account_id": ACCOUNT_ID, **(facts or {})},
        "rules": rules,
        "decision": {"steps": [{"qualification": "q"}]},
    }
    doc.update(sections)
    return doc


def guardrails(conditions: dict[str, str], severity: str = "info") -> list[dict[str, Any]]:
    """One guardrail per `{id: when}`."""
    return [
        {"id": rid, "kind": "guardrail", "severity": severity, "when": when}
        for rid, when in conditions.items()
    ]


def ruleset_text(rules: list[dict[str, Any]], **kw: Any) -> str:
    """`ruleset_doc` as ruleset source text (JSON is YAML)."""
    return json.dumps(ruleset_doc(rules, **kw))


def broken(old: str, new: str, base: str = BASE) -> str:
    """The base fixture with its one line `old` replaced by `new`."""
    assert base.count(old) == 1, old
    return base.replace(old, new)


WHEN_SPEND = "    when: annual_spend >= min_spend"
WHEN_KIND = "    when: kind == 'public'"
MESSAGE = '    message: {en: "Spend {annual_spend}.", zh: "采购额{annual_spend}。"}'


def diagnostics(text: str, file: str = "b.yaml") -> list[Any]:
    """Every diagnostic of a ruleset text that must not load."""
    import pytest

    import engine

    with pytest.raises(engine.RulesetError) as info:
        engine.prepare(file, text).close()
    return info.value.diagnostics


def located(diags: list[Any]) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.col) for d in diags]


def assert_located(code: str, old: str, new: str, line: int, col: int, hint: str | None) -> None:
    """Breaking `old` into `new` in the base fixture gives `code` at `line:col` (with `hint`)."""
    diags = diagnostics(broken(old, new))
    assert (code, line, col) in located(diags), located(diags)
    if hint is not None:
        d = next(d for d in diags if (d.code, d.line, d.col) == (code, line, col))
        assert d.hint is not None and hint in d.hint
    assert all(d.file == "b.yaml" for d in diags)
