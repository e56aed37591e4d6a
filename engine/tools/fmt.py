"""`kaq fmt`: the canonical layout of ruleset and test-case YAML.

The file is read and written with ruamel.yaml's round-trip mode, so comments,
quoting and flow style survive. Only two things change: keys are put in a
stable order (the order of docs/ruleset-format.md; unknown keys keep their
place after the known ones) and indentation becomes 2 spaces, with list dashes
indented under their parent key. List items are never reordered: the order of
rules and decision steps means something. Formatting twice changes nothing.

Example::

    from engine.tools.fmt import format_text
    canonical = format_text(Path("rulesets/key-account.yaml").read_text())
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from engine.lang.model import (
    CRITERION_OUTCOMES,
    RULE_OUTCOMES,
    Decision,
    DecisionStep,
    DerivedDecl,
    Escalation,
    FactDecl,
    ParamDecl,
    PortfolioDecl,
    RuleDecl,
    RulesetDoc,
    Text,
)
from engine.lang.source import load_yaml
from engine.tools.casetest import CASE_KEYS, FILE_KEYS, VERDICT_WANT_KEYS

__all__ = ["FmtError", "FmtResult", "find_yaml_files", "format_file", "format_text"]

# Key orders: the order in which the models declare their fields (one source of truth; a
# key the models gain takes its place here by itself).
_RULESET = tuple(RulesetDoc.model_fields)
_FACT = tuple(FactDecl.model_fields)
_PARAM = tuple(ParamDecl.model_fields)
_DERIVED = tuple(DerivedDecl.model_fields)
_RULE = tuple(RuleDecl.model_fields)
_ESCALATION = tuple(Escalation.model_fields)
_MESSAGE = (*CRITERION_OUTCOMES, *(o for o in RULE_OUTCOMES if o not in CRITERION_OUTCOMES))
_MESSAGE += tuple(Text.model_fields)
_TEXT = tuple(Text.model_fields)
_DECISION = tuple(Decision.model_fields)
_STEP = tuple(DecisionStep.model_fields)
_PORTFOLIO = tuple(PortfolioDecl.model_fields)
_TESTS = FILE_KEYS
_CASE = CASE_KEYS
_WANT = VERDICT_WANT_KEYS


class FmtError(Exception):
    """A file could not be formatted (it is not YAML); `str()` is `file:line:col: message`."""


@dataclass(frozen=True)
class FmtResult:
    """What formatting one file did."""

    path: Path
    changed: bool
    kind: str | None  # "ruleset", "tests", or None for YAML left alone


def _reorder(node: Any, order: Sequence[str]) -> None:
    """Put the known keys of a mapping first, in `order`; comments stay with their keys."""
    if not isinstance(node, CommentedMap):
        return
    known = [k for k in order if k in node]
    rest = [k for k in node if k not in order]
    wanted = known + rest
    if list(node) == wanted:
        return
    old_last = next(reversed(node))
    for key in wanted:
        node.move_to_end(key)
    if wanted[-1] != old_last:
        _move_trailing_comment(node, old_last, wanted[-1])


def _last_leaf(node: CommentedMap, key: Any) -> tuple[CommentedMap, Any] | None:
    """The block mapping and key whose end-of-line comment ends the value of `node[key]`."""
    while True:
        value = node[key]
        if isinstance(value, CommentedMap) and value and not value.fa.flow_style():
            node, key = value, next(reversed(value))
            continue
        if isinstance(value, CommentedSeq) and value and not value.fa.flow_style():
            return None  # comments after block sequences are left where ruamel put them
        return node, key


def _move_trailing_comment(node: CommentedMap, old_last: Any, new_last: Any) -> None:
    """Keep the comment lines that follow a mapping at its end when its last key moves.

    ruamel attaches the full-line comments after a mapping (often the heading of
    the next section) to the end-of-line comment of its last key; without this
    they would travel with that key into the middle of the mapping.
    """
    old, new = _last_leaf(node, old_last), _last_leaf(node, new_last)
    if old is None or new is None:
        return
    slots = old[0].ca.items.get(old[1])
    token = slots[2] if slots and len(slots) > 2 else None
    if token is None or "\n" not in token.value:
        return
    cut = token.value.index("\n") + 1
    eol, tail = token.value[:cut], token.value[cut:]
    if not tail:
        return
    if eol.strip():
        token.value = eol
    else:
        slots[2] = None
    new_slots = new[0].ca.items.setdefault(new[1], [None, None, None, None])
    while len(new_slots) < 4:
        new_slots.append(None)
    if new_slots[2] is not None:
        new_slots[2].value += tail
    else:
        new_slots[2] = CommentToken("\n" + tail, token.start_mark, None)


def _each_value(node: Any) -> Iterable[Any]:
    return node.values() if isinstance(node, CommentedMap) else ()


def _each_item(node: Any) -> Iterable[Any]:
    return node if isinstance(node, CommentedSeq) else ()


def _text(node: Any) -> None:
    _reorder(node, _TEXT)


def _rules(rules: Any) -> None:
    for rule in _each_item(rules):
        _reorder(rule, _RULE)
        if not isinstance(rule, CommentedMap):
            continue
        _text(rule.get("description"))
        _text(rule.get("recommendation"))
        message = rule.get("message")
        _reorder(message, _MESSAGE)
        for text in _each_value(message):
            _text(text)
        for step in _each_item(rule.get("escalate")):
            _reorder(step, _ESCALATION)
        for text in _each_item(rule.get("playbook")):
            _text(text)


def _decls(decls: Any, order: Sequence[str]) -> None:
    for decl in _each_value(decls):
        _reorder(decl, order)
        if isinstance(decl, CommentedMap):
            _text(decl.get("description"))


def _canonical_ruleset(doc: CommentedMap) -> None:
    _reorder(doc, _RULESET)
    _text(doc.get("description"))
    for section in ("qualifications", "segments", "stages"):
        for text in _each_value(doc.get(section)):
            _text(text)
    _decls(doc.get("facts"), _FACT)
    _decls(doc.get("params"), _PARAM)
    _decls(doc.get("derived"), _DERIVED)
    _rules(doc.get("rules"))
    decision = doc.get("decision")
    _reorder(decision, _DECISION)
    if isinstance(decision, CommentedMap):
        for step in _each_item(decision.get("steps")):
            _reorder(step, _STEP)
            if isinstance(step, CommentedMap):
                _text(step.get("reason"))
    portfolio = doc.get("portfolio")
    _reorder(portfolio, _PORTFOLIO)
    if isinstance(portfolio, CommentedMap):
        _decls(portfolio.get("facts"), _FACT)
        _decls(portfolio.get("params"), _PARAM)
        _rules(portfolio.get("rules"))


def _canonical_tests(doc: CommentedMap) -> None:
    _reorder(doc, _TESTS)
    for case in _each_item(doc.get("cases")):
        _reorder(case, _CASE)
        if isinstance(case, CommentedMap):
            _reorder(case.get("want"), _WANT)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap a long message
    yaml.allow_unicode = True
    return yaml


def detect_kind(doc: Any, filename: str = "") -> str | None:
    """`ruleset`, `tests`, or None when the document is neither."""
    if not isinstance(doc, CommentedMap):
        return None
    if "kaq" in doc:
        return "ruleset"
    if "cases" in doc or filename.endswith((".tests.yaml", ".tests.yml")):
        return "tests"
    return None


def _format(text: str, filename: str) -> tuple[str, str | None]:
    yaml = _yaml()
    doc, problems = load_yaml(filename, text, yaml)
    if problems:
        raise FmtError(str(problems[0]))
    kind = detect_kind(doc, filename)
    if kind is None:
        return text, None
    if kind == "ruleset":
        _canonical_ruleset(doc)
    else:
        _canonical_tests(doc)
    out = io.StringIO()
    if text.lstrip().startswith("---"):
        yaml.explicit_start = True
    yaml.dump(doc, out)
    return out.getvalue(), kind


def format_text(text: str, filename: str = "<text>") -> str:
    """The canonical form of a ruleset or test-case YAML text (other YAML is returned as is)."""
    return _format(text, filename)[0]


def format_file(path: Path, *, check: bool = False) -> FmtResult:
    """Format one file in place (or, with `check`, only report whether it would change)."""
    raw = path.read_bytes()
    text = raw.decode("utf-8").replace("\r\n", "\n")
    new, kind = _format(text, str(path))
    changed = new.encode("utf-8") != raw
    if changed and not check:
        path.write_text(new, encoding="utf-8", newline="\n")
    return FmtResult(path=path, changed=changed, kind=kind)


def find_yaml_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named, and those under the directories named, sorted and unique.

    Hidden folders under a directory are left out: the studio keeps its saved versions in
    `.kaq-history/` as they were saved (named by their digest), never to be rewritten.
    """
    found: set[Path] = set()
    for p in paths:
        if p.is_dir():
            found.update(
                q
                for q in p.rglob("*")
                if q.suffix in (".yaml", ".yml")
                and q.is_file()
                and not any(part.startswith(".") for part in q.relative_to(p).parts[:-1])
            )
        else:
            found.add(p)
    return sorted(found)
