"""What the studio needs from the engine, for a ruleset being edited as text (no HTTP here).

- :func:`check_source`: every diagnostic of one ruleset's text, errors and lint warnings,
  as `kaq check` locates them; whatever the text, it answers (never raises on bad input).
- :func:`form_of`: the params and messages of a text, each with the exact span of its
  value in the text, so that an edit in a form replaces those characters alone and every
  comment and the layout stay as they were.
- :func:`shipped_corpus`: the 2,000 accounts of ``corpus/accounts-2000.jsonl`` (the same
  generator, seed and count), available in any install.

Example::

    result = check_source("key-account", text)
    if result.ok:
        form = form_of(text)      # {"params": [...], "messages": [...]}
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean

from engine.errors import Diagnostic, RulesetError
from engine.lang.program import Compiled
from engine.lang.source import load_yaml, source_digest

__all__ = ["CheckResult", "check_source", "file_name", "form_of", "shipped_corpus", "unit_range"]

SHIPPED_CORPUS = (2000, 42)  # accounts, seed: corpus/accounts-2000.jsonl


def file_name(name: str) -> str:
    """The file a ruleset called `name` is kept in (and named by in diagnostics)."""
    return f"{name}.yaml"


@dataclass
class CheckResult:
    """The outcome of checking one text: its digest, every problem, the compiled ruleset."""

    digest: str
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    compiled: Compiled | None = None

    @property
    def ok(self) -> bool:
        return self.compiled is not None and not any(
            d["severity"] == "error" for d in self.diagnostics
        )

    def errors(self) -> list[dict[str, Any]]:
        return [d for d in self.diagnostics if d["severity"] == "error"]


def _entry(d: Diagnostic, severity: str) -> dict[str, Any]:
    return {**d.to_dict(), "severity": severity}


def check_source(name: str, text: str) -> CheckResult:
    """Compile one ruleset's text (pure Python, any thread): its diagnostics, sorted.

    The ruleset inside must be called `name` (the one being edited); a text that names
    another ruleset is refused with ``studio.name_mismatch``.
    """
    from engine.lang.compile import compile_source

    file = file_name(name)
    result = CheckResult(source_digest(text))
    try:
        compiled = compile_source(file, text)
    except RulesetError as exc:
        result.diagnostics = [_entry(d, "error") for d in exc.diagnostics]
        return result
    except RecursionError:  # the parser bounds nesting first; this is the last line
        result.diagnostics = [
            _entry(Diagnostic(file, 1, 1, "yaml.too_deep", "the text nests too deeply"), "error")
        ]
        return result
    if compiled.doc.name != name:
        line = _line_of_key(text, "name")
        result.diagnostics.append(
            _entry(
                Diagnostic(
                    file,
                    line,
                    1,
                    "studio.name_mismatch",
                    f"this text is the ruleset `{compiled.doc.name}`, not `{name}`",
                    f"keep `name: {name}`; a new ruleset is added as a new file",
                ),
                "error",
            )
        )
    result.diagnostics += [_entry(w, "warning") for w in compiled.warnings]
    result.diagnostics.sort(key=lambda d: (d["line"], d["col"], d["code"]))
    result.compiled = compiled
    return result


def _line_of_key(text: str, key: str) -> int:
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return n
    return 1


# --------------------------------------------------------------------------- the form

# The allowed range of a param by its unit (what a form offers; the compiler still decides).
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "points": (0, 100, False),
    "percent": (0, 100, False),
    "percentile": (0, 100, False),
    "ratio": (0, None, False),
    "count": (0, None, True),
    "years": (0, None, True),
    "money": (0, None, False),
}


def unit_range(unit: str | None) -> dict[str, Any] | None:
    """{"min", "max", "integer"} a param of this unit may take, or None (no unit)."""
    if unit not in _RANGES:
        return None
    lo, hi, integer = _RANGES[unit]
    return {"min": lo, "max": hi, "integer": integer}


def _scalar_end(line: str, start: int) -> int | None:
    """Where the scalar that starts at `start` of `line` ends (exclusive), on that line.

    None when it does not end on this line (a block or multi-line scalar: not form-editable).
    """
    if start >= len(line):
        return None
    quote = line[start]
    if quote == '"':
        i = start + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        return None
    if quote == "'":
        i = start + 1
        while i < len(line):
            if line[i] == "'":
                if i + 1 < len(line) and line[i + 1] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return None
    if quote in "|>[{":
        return None
    end = len(line)
    for i in range(start, len(line)):
        ch = line[i]
        if ch in ",}]" or (ch == "#" and i > start and line[i - 1] in " \t"):
            end = i
            break
    while end > start and line[end - 1] in " \t":
        end -= 1
    return end


def _span(lines: list[str], node: CommentedMap, key: str) -> dict[str, int] | None:
    """1-based line and columns [col, end_col) of the scalar value of `key` in `node`."""
    try:
        ln, cl = node.lc.value(key)
    except (KeyError, TypeError, AttributeError):
        return None
    if ln >= len(lines):
        return None
    end = _scalar_end(lines[ln], cl)
    if end is None:
        return None
    return {"line": ln + 1, "col": cl + 1, "end_col": end + 1}


def _text_entry(lines: list[str], node: Any) -> dict[str, Any] | None:
    if not isinstance(node, CommentedMap):
        return None
    out: dict[str, Any] = {}
    for lang in ("en", "zh"):
        value = node.get(lang)
        if not isinstance(value, str):
            return None
        out[lang] = {"value": str(value), "span": _span(lines, node, lang)}
    return out


def form_of(text: str, doc: Any = None) -> dict[str, Any]:
    """The params and rule messages of a text with the span of each value (None: not
    editable in a form, e.g. a block scalar); empty lists when the text does not parse.

    `doc`: the text's YAML tree when the caller has it already (a compiled ruleset's
    `source.doc`), so it is not parsed twice.
    """
    problems: list[Any] = []
    if doc is None:
        doc, problems = load_yaml("<form>", text)
    params: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    if problems or not isinstance(doc, CommentedMap):
        return {"params": params, "messages": messages}
    lines = text.splitlines()
    decls = doc.get("params")
    if isinstance(decls, CommentedMap):
        for name, decl in decls.items():
            if not isinstance(decl, CommentedMap) or "value" not in decl:
                continue
            value = decl["value"]
            scalar = isinstance(value, int | float | str) and not isinstance(value, list)
            unit = decl.get("unit") if isinstance(decl.get("unit"), str) else None
            description = decl.get("description")
            params.append(
                {
                    "name": str(name),
                    "value": _plain_value(value),
                    "unit": unit,
                    "label": _label(description),
                    "range": unit_range(unit) if _is_number(value) else None,
                    "span": _span(lines, decl, "value") if scalar else None,
                }
            )
    rules = doc.get("rules")
    if isinstance(rules, CommentedSeq):
        for rule in rules:
            if not isinstance(rule, CommentedMap) or not isinstance(rule.get("id"), str):
                continue
            label = _label(rule.get("label"))
            for key in ("message", "recommendation"):
                node = rule.get(key)
                single = _text_entry(lines, node)
                if single is not None:
                    messages.append({"rule": rule["id"], "label": label, "key": key, **single})
                elif isinstance(node, CommentedMap):
                    for outcome, text_node in node.items():
                        entry = _text_entry(lines, text_node)
                        if entry is not None:
                            messages.append(
                                {
                                    "rule": rule["id"],
                                    "label": label,
                                    "key": f"{key}.{outcome}",
                                    "outcome": str(outcome),
                                    **entry,
                                }
                            )
    return {"params": params, "messages": messages}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool | ScalarBoolean)


def _plain_value(value: Any) -> Any:
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def _label(node: Any) -> dict[str, str] | None:
    if isinstance(node, Mapping) and all(isinstance(node.get(k), str) for k in ("en", "zh")):
        return {"en": str(node["en"]), "zh": str(node["zh"])}
    return None


# --------------------------------------------------------------------------- the corpus


@functools.cache
def _shipped() -> tuple[dict[str, Any], ...]:
    from engine.tools.corpus import generate_accounts

    n, seed = SHIPPED_CORPUS
    return tuple(generate_accounts(n, seed=seed))


def shipped_corpus() -> list[dict[str, Any]]:
    """The shipped corpus (made once per process, on first use)."""
    return list(_shipped())
