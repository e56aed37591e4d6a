"""What changed between two rulesets, statically: rules added, removed and changed; params,
derived facts and decision steps; and which rules read a changed name.

Which names a rule, a derived fact or the decision reads comes from the compiled ruleset
(`PreparedRuleset.names_read`), so the diff and the engine agree on it. Without it (two bare
YAML documents), the names are taken from the expressions as kaq's own parser reads them.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML

from engine.lang import expr as E
from engine.lang.source import plain


def _dump(node: Any) -> str:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(node, out)
    return out.getvalue()


def _udiff(base: Any, head: Any, label: str) -> str:
    a = _dump(base).splitlines(keepends=True) if base is not None else []
    b = _dump(head).splitlines(keepends=True) if head is not None else []
    return "".join(
        difflib.unified_diff(a, b, fromfile=f"base/{label}", tofile=f"head/{label}", n=2)
    )


def _names(expr: Any) -> set[str]:
    """The names an expression reads, by kaq's expression parser (a bare name counts: a
    criterion's weight may be a param). An expression that does not parse reads nothing
    here; the ruleset's own check reports it."""
    if not isinstance(expr, str):
        return set()
    try:
        return {n.name for n in E.names(E.parse(expr))}
    except E.ExprError:
        return set()


def _rule_reads(rule: Mapping[str, Any]) -> set[str]:
    names = set()
    for key in ("applies_when", "when", "partly_when", "weight"):
        names |= _names(rule.get(key))
    for step in rule.get("escalate") or []:
        if isinstance(step, Mapping):
            names |= _names(step.get("when"))
    return names


def _mapping(doc: Any, *path: str) -> Mapping[str, Any]:
    node = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _rules(doc: Any) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for section in ((), ("portfolio",)):
        node = _mapping(doc, *section).get("rules") if section else _mapping(doc).get("rules")
        for rule in node or []:
            if isinstance(rule, Mapping) and isinstance(rule.get("id"), str):
                rules[rule["id"]] = rule
    return rules


def _decl_changes(base: Mapping[str, Any], head: Mapping[str, Any], what: str) -> list[dict]:
    out = []
    for name in [*base, *(k for k in head if k not in base)]:
        b, h = base.get(name), head.get(name)
        if plain(b) == plain(h):
            continue
        entry: dict[str, Any] = {"name": str(name)}
        entry["change"] = "added" if b is None else "removed" if h is None else "changed"
        if isinstance(b, Mapping) or isinstance(h, Mapping):
            bv = plain(b.get("value")) if isinstance(b, Mapping) else None
            hv = plain(h.get("value")) if isinstance(h, Mapping) else None
            if what == "param":
                entry["base"], entry["head"] = bv, hv
        section = {"param": "params", "derived": "derived", "fact": "facts"}[what]
        entry["diff"] = _udiff(
            {name: b} if b is not None else None,
            {name: h} if h is not None else None,
            f"{section}.{name}",
        )
        out.append(entry)
    return out


def ruleset_changes(
    base_doc: Any, head_doc: Any, reads: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Rules added, removed and changed, and the params / derived facts / decision that changed.

    A rule counts as changed when its own YAML differs (comments aside) or when it
    reads a param or derived fact that changed (rules name params, so editing a
    threshold changes every rule that reads it). `reads` is the head ruleset's
    `names_read()`; without it the names are parsed from the YAML expressions.
    """
    if reads is not None:
        rule_reads = {rid: set(ns) for rid, ns in reads["rules"].items()}
        derived_reads = {name: set(ns) for name, ns in reads["derived"].items()}
        decision_reads = set(reads["decision"])
    else:
        rule_reads = {rid: _rule_reads(r) for rid, r in _rules(head_doc).items()}
        derived_reads = {
            str(name): _names(decl.get("expr"))
            for name, decl in _mapping(head_doc, "derived").items()
            if isinstance(decl, Mapping)
        }
        decision_reads = set()
        for step in _mapping(head_doc, "decision").get("steps") or []:
            if isinstance(step, Mapping):
                decision_reads |= _names(step.get("when"))
    base_rules, head_rules = _rules(base_doc), _rules(head_doc)
    params = _decl_changes(
        _mapping(base_doc, "params"), _mapping(head_doc, "params"), "param"
    ) + _decl_changes(
        _mapping(base_doc, "portfolio", "params"),
        _mapping(head_doc, "portfolio", "params"),
        "param",
    )
    derived = _decl_changes(_mapping(base_doc, "derived"), _mapping(head_doc, "derived"), "derived")
    facts = _decl_changes(_mapping(base_doc, "facts"), _mapping(head_doc, "facts"), "fact")
    changed_names = {p["name"] for p in params} | {d["name"] for d in derived}
    # A derived fact that reads a changed name changes too (transitively).
    grew = True
    while grew:
        grew = False
        for name, names in derived_reads.items():
            if name not in changed_names and names & changed_names:
                changed_names.add(name)
                grew = True

    changed = []
    for rid, rule in head_rules.items():
        base_rule = base_rules.get(rid)
        if base_rule is None:
            continue
        edited = plain(base_rule) != plain(rule)
        moved_by = sorted(rule_reads.get(rid, set()) & changed_names)
        if edited or moved_by:
            changed.append(
                {
                    "id": rid,
                    "edited": edited,
                    "reads_changed": moved_by,
                    "diff": _udiff([base_rule], [rule], rid) if edited else "",
                }
            )

    base_steps = _mapping(base_doc, "decision").get("steps") or []
    head_steps = _mapping(head_doc, "decision").get("steps") or []
    edited = plain(base_steps) != plain(head_steps)
    decision = {
        "edited": edited,
        "reads_changed": sorted(decision_reads & changed_names),
        "diff": _udiff(base_steps, head_steps, "decision.steps") if edited else "",
    }
    return {
        "rules_added": [rid for rid in head_rules if rid not in base_rules],
        "rules_removed": [rid for rid in base_rules if rid not in head_rules],
        "rules_changed": changed,
        "params_changed": params,
        "derived_changed": derived,
        "facts_changed": facts,
        "decision": decision,
        "param_values": {
            "base": {str(k): plain(v.get("value")) for k, v in _param_decls(base_doc).items()},
            "head": {str(k): plain(v.get("value")) for k, v in _param_decls(head_doc).items()},
        },
    }


def _param_decls(doc: Any) -> dict[str, Mapping[str, Any]]:
    out = {}
    for section in (("params",), ("portfolio", "params")):
        for k, v in _mapping(doc, *section).items():
            if isinstance(v, Mapping):
                out[k] = v
    return out


# --------------------------------------------------------------------------- verdict diff
