"""Stage "check shape": the parsed YAML against the ruleset models, every problem located."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from engine.errors import Diagnostic, RulesetError
from engine.hints import suggest
from engine.lang.model import FactDecl, ParamDecl, RuleDecl, RulesetDoc
from engine.lang.source import Source, plain


def _missing_when(src: Source, data: Any) -> list[Diagnostic]:
    """A rule with neither `when` nor `parts` is missing its `when` (parts are for guardrails,
    so `when` is the key to name)."""
    out = []
    for base in ((), ("portfolio",)):
        node = data
        for key in base:
            node = node.get(key) if isinstance(node, dict) else None
        rules = node.get("rules") if isinstance(node, dict) else None
        for i, rule in enumerate(rules if isinstance(rules, list) else ()):
            if isinstance(rule, dict) and "when" not in rule and not rule.get("parts"):
                loc = (*base, "rules", i)
                out.append(
                    src.diag(loc, "ruleset.missing_key", f"`when` is required in {_where(loc)}")
                )
    return out


def check_shape(src: Source) -> RulesetDoc:
    """The ruleset document, or RulesetError with a located diagnostic per problem."""
    data = plain(src.doc)
    missing = _missing_when(src, data)
    try:
        doc = RulesetDoc.model_validate(data)
    except ValidationError as exc:
        diags = list(missing)
        for err in exc.errors(include_url=False):
            if "a rule needs a `when`" in err["msg"]:
                continue  # reported above, at the rule, as the key it lacks

            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            hint = None
            if err["type"] == "extra_forbidden":
                parent = loc[:-1]
                line, col = src.key_position(loc)
                allowed = _allowed_keys(loc)
                hint = suggest(str(loc[-1]), allowed, None) if allowed else None
                diags.append(
                    Diagnostic(
                        src.file,
                        line,
                        col,
                        "ruleset.unknown_key",
                        f"unknown key `{loc[-1]}` in {_where(parent)}",
                        hint,
                    )
                )
                continue
            if err["type"] in ("model_type", "dict_type"):
                what = loc[-2] if len(loc) >= 2 and isinstance(loc[-1], str) else "value"
                diags.append(
                    src.diag(
                        loc,
                        "ruleset.shape",
                        f"{_where(loc)}: expected a mapping (keys and values), "
                        f"got {_yaml_kind(err.get('input'))}",
                        "for a param write `{value: 70}`" if what == "params" else None,
                    )
                )
                continue
            if err["type"] == "missing":
                diags.append(
                    src.diag(
                        loc[:-1],
                        "ruleset.missing_key",
                        f"`{loc[-1]}` is required in {_where(loc[:-1])}",
                    )
                )
                continue
            if err["type"] == "literal_error" and loc == ("kaq",):
                msg = "`kaq:` must be 1 (the format version)"
            diags.append(src.diag(loc, "ruleset.shape", f"{_where(loc)}: {msg}", hint))
        raise RulesetError(diags) from None
    if missing:
        raise RulesetError(missing)
    return doc


def looks_numeric(text: str) -> str | None:
    """`70%`, `¥1,000,000`, ` 15 ` -> the number a sales-ops person meant, as text."""
    t = text.strip().rstrip("%").lstrip("¥$€").replace(",", "").replace("_", "").strip()
    try:
        float(t)
    except ValueError:
        return None
    return t


def _yaml_kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return f"the text `{v}`"
    return f"`{v}`"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    from engine.lang.model import DecisionStep, DerivedDecl, Escalation, PortfolioDecl, UnitWord

    depth_models: list[Any] = []
    if len(loc) >= 4 and loc[-2] == "unit_word":  # of a fact, param or derived fact
        depth_models = [UnitWord]
    elif len(loc) == 1:
        depth_models = [RulesetDoc]
    elif loc[0] in ("facts",) and len(loc) == 3:
        depth_models = [FactDecl]
    elif loc[0] == "params" and len(loc) == 3:
        depth_models = [ParamDecl]
    elif loc[0] == "derived" and len(loc) == 3:
        depth_models = [DerivedDecl]
    elif loc[0] == "rules" and len(loc) == 3:
        depth_models = [RuleDecl]
    elif loc[0] == "rules" and len(loc) == 5 and loc[2] == "escalate":
        depth_models = [Escalation]
    elif loc[0] == "decision" and len(loc) == 4:
        depth_models = [DecisionStep]
    elif loc[0] == "portfolio" and len(loc) == 2:
        depth_models = [PortfolioDecl]
    return [k for m in depth_models for k in m.model_fields]


def _where(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "the ruleset"
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
