"""Compile a ruleset in named, ordered stages.

parse (YAML with positions) → check shape (pydantic models) → resolve names → type-check
expressions and templates → order rules into evaluation levels → lower conditions into
durable_rules conditions. Every stage collects all its diagnostics; the first stage that
finds any stops the pipeline, so later stages never run on broken input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engine.errors import Diagnostic, RulesetError
from engine.lang import expr as E
from engine.lang.model import (
    NAME_PATTERN,
    SEVERITY_RANK,
    FactDecl,
    ParamDecl,
    RuleDecl,
    RulesetDoc,
    Text,
)
from engine.lang.source import Source, plain, read_yaml
from engine.runtime._durable import (
    MAX_ALPHA_STACK,
    MAX_ATOMS,
    MAX_FIELDS,
    STAGE_FIELD,
    alpha_stack_bound,
    encoder_for,
)
from engine.runtime.render import placeholders

OUTCOME_VARS: dict[str, str] = {
    "score": "number",
    "required_not_met": "number",
    "required_not_evaluable": "number",
    "required_not_met_rules": "list",
    "required_not_evaluable_rules": "list",
    "segments": "list",
    "qualification": "enum",
    "stage": "enum",
}
PRODUCED_BY = {
    "score": "criterion",
    "required_not_met": "criterion",
    "required_not_evaluable": "criterion",
    "required_not_met_rules": "criterion",
    "required_not_evaluable_rules": "criterion",
    "segments": "segment",
    "stage": "stage",
    "qualification": "decision",
}
RESERVED = set(E.FUNCTIONS) | set(E.KEYWORDS) | set(OUTCOME_VARS) | {"id", "sid", "kaq_stage"}

TRUE_COND = {"$gte": {"kaq_stage": 0}}
FALSE_COND = {"$lt": {"kaq_stage": 0}}
_OP = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}


# --------------------------------------------------------------------------- compiled forms


@dataclass
class Slot:
    """A value the engine compares: a name's value, or a computed (hoisted) expression."""

    field: str
    level: int
    name: str | None = None  # a fact / derived / outcome name
    node: E.Node | None = None  # a hoisted expression
    diff: tuple[E.Node, E.Node] | None = None  # rnd(rnd(a) - rnd(b)) for a op b
    fn: Any = None  # env -> the value sent to the engine (None: field absent)
    part: Any = None  # env -> '"field":value' as the engine reads it, or None
    type: E.Type = E.NUMBER

    def build(self) -> None:
        """The functions that compute this slot's engine value (and its JSON) from the env."""
        if self.name is not None:
            key = self.name

            def value(env: Mapping[str, Any]) -> Any:
                v = env.get(key)
                return E.rnd(v) if type(v) is float else v  # names are never lists here

        elif self.diff is not None:
            fa, fb = E.closure(self.diff[0]), E.closure(self.diff[1])

            def value(env: Mapping[str, Any]) -> Any:
                a, b = fa(env), fb(env)
                return None if a is None or b is None else E.rnd(E.rnd(a) - E.rnd(b))

        else:
            assert self.node is not None
            f = E.closure(self.node)

            def value(env: Mapping[str, Any]) -> Any:
                return _engine_value(f(env))

        self.fn = value
        t = self.type
        kind = (
            "bool"
            if t == E.BOOL
            else "number"
            if t == E.NUMBER
            else "enum"
            if t.kind == "string" and t.values
            else "string"
        )
        enc = encoder_for(kind, t.values if kind == "enum" else None)
        prefix = f'"{self.field}":'

        if self.name is not None and kind != "number":
            # booleans, enums and strings reach the engine as they are
            key = self.name

            def part(env: Mapping[str, Any]) -> str | None:
                v = env.get(key)
                return None if v is None else prefix + enc(v)

        else:

            def part(env: Mapping[str, Any]) -> str | None:
                v = value(env)
                return None if v is None else prefix + enc(v)

        self.part = part


def _engine_value(v: Any) -> Any:
    if isinstance(v, float):
        return E.rnd(v)
    if isinstance(v, list):
        return None  # lists never reach the engine: membership and counts are hoisted
    return v


@dataclass
class EngineRule:
    name: str
    level: int
    cond: dict[str, Any]
    node: E.Node
    positive: bool
    owner: str  # rule id, or "decision.<n>"
    role: str  # pos / ppos / esc<i> / step


@dataclass
class Rule:
    id: str
    kind: str
    index: int
    decl: RuleDecl
    level: int = 1
    cond: E.Node = None  # type: ignore[assignment]
    partly: E.Node | None = None
    escalations: list[tuple[str, E.Node]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)  # fact / derived / outcome names, in order
    params: list[str] = field(default_factory=list)
    input_deps: list[str] = field(default_factory=list)
    esc_input_deps: list[list[str]] = field(default_factory=list)  # per escalation level
    comparisons: list[E.Node] = field(default_factory=list)
    weight: float = 0.0
    engine: dict[str, str] = field(default_factory=dict)  # role -> engine rule name
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    recommendation: dict[str, str] | None = None
    playbook: list[dict[str, str]] = field(default_factory=list)
    # built after type-checking: closures for the explanation side
    cond_fn: Any = None
    partly_fn: Any = None
    esc_fns: list[Any] = field(default_factory=list)
    records_fn: Any = None  # env -> the trace records of `comparisons` (None: no comparisons)


@dataclass
class Step:
    index: int
    node: E.Node | None
    qualification: str
    reason: dict[str, str] | None
    level: int = 1
    engine: str | None = None
    fn: Any = None


@dataclass
class Derived:
    name: str
    node: E.Node
    unit: str | None
    input_deps: list[str]
    fn: Any = None


@dataclass
class Program:
    """A compiled set of rules over one set of facts (the account, or the portfolio)."""

    facts: dict[str, FactDecl]
    params: dict[str, Any]
    units: dict[str, str | None]
    derived: list[Derived]
    rules: list[Rule]
    steps: list[Step]
    levels: list[int]
    engine_rules: dict[str, EngineRule]
    slots: dict[str, Slot]  # field -> slot
    level_fields: dict[int, list[Slot]]
    var_level: dict[str, int]  # outcome variable -> level after which it is known
    atom_count: int
    rules_by_level: dict[int, list[Rule]] = field(default_factory=dict)
    rules_of_kind: dict[str, list[Rule]] = field(default_factory=dict)
    step_levels: set[int] = field(default_factory=set)
    plan: Any = None  # engine.runtime.evaluator.Plan, built on first evaluation


@dataclass
class Compiled:
    doc: RulesetDoc
    source: Source
    program: Program
    portfolio: Program | None
    labels: dict[str, dict[str, dict[str, str]]]
    digest: str
    missing: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)


# --------------------------------------------------------------------------- pipeline


def compile_source(file: str, text: str) -> Compiled:
    """Run every stage on one ruleset file; raises RulesetError with all diagnostics."""
    src, diags = read_yaml(file, text)
    if diags or src is None:
        raise RulesetError(diags)
    doc = _check_shape(src)
    c = _Compiler(src, doc)
    program = c.program(
        doc.facts, doc.params, doc.derived, doc.rules, doc.decision.steps, ("rules",), ()
    )
    portfolio = None
    if doc.portfolio is not None:
        params = {**doc.params, **doc.portfolio.params}
        portfolio = c.program(
            doc.portfolio.facts,
            params,
            {},
            doc.portfolio.rules,
            [],
            ("portfolio", "rules"),
            ("portfolio",),
        )
    if c.diags:
        raise RulesetError(c.diags)
    labels: dict[str, dict[str, dict[str, str]]] = {
        name: {k: v.model_dump() for k, v in (decl.labels or {}).items()}
        for name, decl in doc.facts.items()
        if decl.labels
    }
    labels.update(
        {
            "qualification": {k: v.model_dump() for k, v in doc.qualifications.items()},
            "segments": {k: v.model_dump() for k, v in doc.segments.items()},
            "stage": {k: v.model_dump() for k, v in doc.stages.items()},
        }
    )
    # required criteria print by their label (else description, else id) in messages
    criteria = {
        r.id: (r.label or r.description or Text(en=r.id, zh=r.id)).model_dump()
        for r in doc.rules
        if r.kind == "criterion"
    }
    labels["required_not_met_rules"] = criteria
    labels["required_not_evaluable_rules"] = criteria
    missing = {n: d.missing.model_dump() for n, d in doc.facts.items() if d.missing}
    missing.update({n: d.missing.model_dump() for n, d in doc.derived.items() if d.missing})
    digest = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Compiled(doc, src, program, portfolio, labels, digest, missing, sorted(c.warnings))


def _check_shape(src: Source) -> RulesetDoc:
    try:
        return RulesetDoc.model_validate(plain(src.doc))
    except ValidationError as exc:
        diags = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            hint = None
            if err["type"] == "extra_forbidden":
                parent = loc[:-1]
                line, col = src.key_position(loc)
                allowed = _allowed_keys(loc)
                hint = E.suggest(str(loc[-1]), allowed, None) if allowed else None
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


def _looks_numeric(text: str) -> str | None:
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
    from engine.lang.model import DecisionStep, DerivedDecl, Escalation, PortfolioDecl

    depth_models: list[Any] = []
    if len(loc) == 1:
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


class _Compiler:
    def __init__(self, src: Source, doc: RulesetDoc):
        self.src = src
        self.doc = doc
        self.diags: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []  # reported by `kaq check`, never block a load
        self._engine_seq = 0
        self._field_seq = 0

    # -- helpers
    def err(self, path: tuple[Any, ...], code: str, message: str, hint: str | None = None) -> None:
        self.diags.append(self.src.diag(path, code, message, hint))

    def err_key(
        self, path: tuple[Any, ...], code: str, message: str, hint: str | None = None
    ) -> None:
        """A diagnostic located at the key that ends `path` (a name, not its value)."""
        line, col = self.src.key_position(path)
        self.diags.append(Diagnostic(self.src.file, line, col, code, message, hint))

    def expr_err(self, path: tuple[Any, ...], exc: E.ExprError) -> None:
        line, col = self.src.expr_position(path, exc.offset)
        self.diags.append(Diagnostic(self.src.file, line, col, exc.code, exc.message, exc.hint))

    def parse(
        self,
        path: tuple[Any, ...],
        text: str,
        symbols: Mapping[str, E.Symbol],
        want_bool: bool = True,
    ) -> E.Node | None:
        try:
            node = E.parse(text)
            E.check(node, symbols, want_bool=want_bool)
        except E.ExprError as exc:
            self.expr_err(path, exc)
            return None
        self.lint(path, node)
        return node

    def lint(self, path: tuple[Any, ...], node: E.Node) -> None:
        """Warnings about an expression that loads but cannot mean what it says."""
        for x in E.walk(node):
            if isinstance(x, E.Arith) and x.op == "/" and _constant_value(x.right) == 0:
                self.warn_expr(
                    path,
                    x.offset,
                    "expr.division_by_zero",
                    f"`{E.unparse(x)}` divides by zero: it is always unknown, so this "
                    "is never decided",
                    "divide by a fact or a non-zero param",
                )
            if isinstance(x, E.Cmp) and x.left.type == E.NUMBER:
                for const, other in ((x.right, x.left), (x.left, x.right)):
                    value = _constant_value(const)
                    if isinstance(value, float) and E.rnd(value) != value and _rounded(other):
                        shown = E.unparse(const)
                        self.warn_expr(
                            path,
                            x.offset,
                            "expr.precision",
                            f"`{E.unparse(other)}` is rounded to {E.ROUND_DIGITS} decimal "
                            f"places before it is compared, so `{shown}` ({value!r}) compares "
                            f"as {E.rnd(value)!r}",
                            f"write the threshold with at most {E.ROUND_DIGITS} decimals",
                        )

    def warn_expr(
        self, path: tuple[Any, ...], offset: int, code: str, message: str, hint: str
    ) -> None:
        line, col = self.src.expr_position(path, offset)
        self.warnings.append(Diagnostic(self.src.file, line, col, code, message, hint))

    # -- one program
    def program(
        self,
        facts: Mapping[str, FactDecl],
        params: Mapping[str, ParamDecl],
        derived: Mapping[str, Any],
        rules: list[RuleDecl],
        steps: list[Any],
        rules_path: tuple[Any, ...],
        base: tuple[Any, ...],
    ) -> Program:
        doc = self.doc
        symbols: dict[str, E.Symbol] = {}
        units: dict[str, str | None] = {}
        seen_names: dict[str, str] = {}

        def declare(name: str, path: tuple[Any, ...], what: str) -> bool:
            import re

            if not re.match(NAME_PATTERN, name):
                self.err_key(
                    path,
                    "ruleset.bad_name",
                    f"{what} name `{name}` must be lower_snake_case (a-z, 0-9, _)",
                )
                return False
            if name in RESERVED:
                self.err_key(
                    path,
                    "ruleset.reserved_name",
                    f"`{name}` is a reserved word",
                    "choose another name",
                )
                return False
            if name in seen_names:
                self.err_key(
                    path,
                    "ruleset.duplicate_name",
                    f"`{name}` is already declared as a {seen_names[name]}",
                )
                return False
            seen_names[name] = what
            return True

        for name, decl in facts.items():
            if declare(name, base + ("facts", name), "fact"):
                symbols[name] = E.Symbol("fact", _fact_type(decl))
                units[name] = decl.unit
        own = doc.portfolio.params if base and doc.portfolio else doc.params
        for name, p in params.items():
            ppath = (
                ("portfolio", "params", name)
                if base and name in (doc.portfolio.params if doc.portfolio else {})
                else ("params", name)
            )
            # the portfolio program sees the top-level params too: each is checked once
            if name in own and isinstance(p.value, str) and _looks_numeric(p.value):
                self.err(
                    ppath + ("value",),
                    "ruleset.param_type",
                    f"param `{name}` is the text `{p.value}`, not a number",
                    f"write the number alone: `value: {_looks_numeric(p.value)}`",
                )
            if declare(name, ppath, "param"):
                symbols[name] = E.Symbol("param", _param_type(p.value), p.value)
                units[name] = p.unit
        if not base:
            for var, kind in OUTCOME_VARS.items():
                if kind == "number":
                    t = E.NUMBER
                elif var == "segments":
                    t = E.Type("list", tuple(doc.segments))
                elif var.endswith("_rules"):
                    t = E.Type("list", tuple(r.id for r in doc.rules if r.kind == "criterion"))
                elif var == "stage":
                    t = E.Type("string", tuple(doc.stages))
                else:
                    t = E.Type("string", tuple(doc.qualifications))
                symbols[var] = E.Symbol("outcome", t)
                units[var] = "points" if var == "score" else None

        # derived facts: declare all, then type-check in dependency order
        derived_nodes: dict[str, E.Node] = {}
        for name, d in derived.items():
            if not declare(name, ("derived", name), "derived fact"):
                continue
            units[name] = d.unit
            try:
                derived_nodes[name] = E.parse(d.expr)
            except E.ExprError as exc:
                self.expr_err(("derived", name, "expr"), exc)
        order = self._derived_order(derived_nodes, symbols)
        derived_list: list[Derived] = []
        input_deps_of: dict[str, list[str]] = {}
        for name in order:
            node = derived_nodes[name]
            try:
                t = E.check(
                    node,
                    {k: v for k, v in symbols.items() if v.scope != "outcome"},
                    want_bool=False,
                )
            except E.ExprError as exc:
                self.expr_err(("derived", name, "expr"), exc)
                continue
            symbols[name] = E.Symbol("derived", t)
            self.lint(("derived", name, "expr"), node)
            deps: list[str] = []
            for n in E.names(node):
                if n.scope == "fact":
                    deps.append(n.name)
                elif n.scope == "derived":
                    deps.extend(input_deps_of.get(n.name, []))
            input_deps_of[name] = list(dict.fromkeys(deps))
            derived_list.append(Derived(name, node, units.get(name), input_deps_of[name]))

        # rules
        compiled: list[Rule] = []
        ids: dict[str, int] = {}
        for i, rdecl in enumerate(rules):
            path = rules_path + (i,)
            if rdecl.id in ids:
                self.err(
                    path + ("id",),
                    "ruleset.duplicate_rule_id",
                    f"rule id `{rdecl.id}` is already used by rule #{ids[rdecl.id] + 1} "
                    f"(line {self.src.position(rules_path + (ids[rdecl.id], 'id'))[0]})",
                    "rule ids must be unique: rename one of them",
                )
                continue
            ids[rdecl.id] = i
            r = self._rule(rdecl, i, path, symbols, units, input_deps_of, params)
            if r is not None:
                compiled.append(r)

        criteria = [r for r in compiled if r.kind == "criterion"]
        total = sum(r.weight for r in criteria)
        if criteria and not self.diags and abs(total - 100) > 1e-9:
            first = criteria[0]
            where = rules_path + (first.index, "weight")
            if total > 100:
                self.err(
                    where,
                    "ruleset.score_range",
                    f"criterion weights add up to {E.rnd(total)}: scores above 100 are possible, "
                    "but the score runs from 0 to 100",
                    "make the weights of all criteria add up to 100",
                )
            else:
                self.warnings.append(
                    self.src.diag(
                        where,
                        "ruleset.score_below_100",
                        f"criterion weights add up to {E.rnd(total)}: no account can score 100",
                        "make the weights of all criteria add up to 100, unless that is intended",
                    )
                )

        # decision steps
        step_list: list[Step] = []
        for i, s in enumerate(steps):
            path = ("decision", "steps", i)
            if s.qualification not in doc.qualifications:
                self.err(
                    path + ("qualification",),
                    "ruleset.unknown_qualification",
                    f"unknown qualification `{s.qualification}`",
                    E.suggest(
                        s.qualification, doc.qualifications, "declare it under `qualifications:`"
                    ),
                )
            step_node: E.Node | None = None
            if s.when is not None:
                step_node = self.parse(path + ("when",), s.when, symbols)
                if step_node is None:
                    continue
            elif i != len(steps) - 1:
                self.err(
                    path,
                    "ruleset.decision_unreachable",
                    "a step without `when` matches everything, so the steps after it never run",
                    "move it to the end",
                )
            reason = s.reason.model_dump() if s.reason else None
            if s.reason:
                self._check_template(path + ("reason",), s.reason, symbols)
            step_list.append(Step(i, step_node, s.qualification, reason))
        if steps and steps[-1].when is not None:
            self.err(
                ("decision", "steps", len(steps) - 1),
                "ruleset.decision_incomplete",
                "the last decision step needs no `when`, so that every account gets a "
                "qualification",
                "add a final step with only `qualification:`",
            )

        if self.diags:
            return Program(
                dict(facts), {}, units, derived_list, compiled, step_list, [], {}, {}, {}, {}, 0
            )
        var_level = self._levels(compiled, step_list, rules_path)
        prog = Program(
            facts=dict(facts),
            params={k: p.value for k, p in params.items()},
            units=units,
            derived=derived_list,
            rules=compiled,
            steps=step_list,
            levels=[],
            engine_rules={},
            slots={},
            level_fields={},
            var_level=var_level,
            atom_count=0,
        )
        if not self.diags:
            self._lower(prog, symbols, rules_path)
        return prog

    def _derived_order(
        self, nodes: Mapping[str, E.Node], symbols: Mapping[str, E.Symbol]
    ) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, stack: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = stack[stack.index(name) :] + [name]
                self.err(
                    ("derived", name, "expr"),
                    "ruleset.derived_cycle",
                    "derived facts depend on each other in a cycle: " + " → ".join(cycle),
                )
                return
            state[name] = 1
            for n in E.names(nodes[name]):
                if n.name in nodes:
                    visit(n.name, stack + [name])
            state[name] = 2
            order.append(name)

        for name in nodes:
            visit(name, [])
        return [n for n in dict.fromkeys(order) if n in nodes]

    def _rule(
        self,
        decl: RuleDecl,
        index: int,
        path: tuple[Any, ...],
        symbols: Mapping[str, E.Symbol],
        units: Mapping[str, str | None],
        input_deps_of: Mapping[str, list[str]],
        params: Mapping[str, ParamDecl],
    ) -> Rule | None:
        doc = self.doc
        ok = True
        r = Rule(decl.id, decl.kind, index, decl)
        if decl.kind == "segment" and decl.segment not in doc.segments:
            self.err(
                path + ("segment",),
                "ruleset.unknown_segment",
                f"unknown segment `{decl.segment}`",
                E.suggest(decl.segment or "", doc.segments, "declare it under `segments:`"),
            )
            ok = False
        if decl.kind == "stage" and decl.stage not in doc.stages:
            self.err(
                path + ("stage",),
                "ruleset.unknown_stage",
                f"unknown stage `{decl.stage}`",
                E.suggest(decl.stage or "", doc.stages, "declare it under `stages:`"),
            )
            ok = False
        if decl.kind == "criterion":
            w = decl.weight
            if isinstance(w, str):
                p = params.get(w)
                if p is None:
                    self.err(
                        path + ("weight",),
                        "ruleset.unknown_param",
                        f"unknown param `{w}`",
                        E.suggest(w, params),
                    )
                    ok = False
                elif isinstance(p.value, bool) or not isinstance(p.value, int | float):
                    self.err(path + ("weight",), "ruleset.type", f"param `{w}` is not a number")
                    ok = False
                else:
                    r.weight = float(p.value)
                    r.params.append(w)
            elif w is not None:
                r.weight = float(w)
            if r.weight < 0:
                self.err(path + ("weight",), "ruleset.type", "a weight cannot be negative")
                ok = False

        when = self.parse(path + ("when",), decl.when, symbols)
        applies = (
            self.parse(path + ("applies_when",), decl.applies_when, symbols)
            if decl.applies_when
            else None
        )
        partly = (
            self.parse(path + ("partly_when",), decl.partly_when, symbols)
            if decl.partly_when
            else None
        )
        escal: list[tuple[str, E.Node]] = []
        for j, esc in enumerate(decl.escalate):
            n = self.parse(path + ("escalate", j, "when"), esc.when, symbols)
            if n is None:
                ok = False
                continue
            if decl.severity and SEVERITY_RANK[esc.severity] <= SEVERITY_RANK[decl.severity]:
                self.err(
                    path + ("escalate", j, "severity"),
                    "ruleset.escalation_not_higher",
                    f"escalation to `{esc.severity}` is not above the base severity "
                    f"`{decl.severity}`",
                )
                ok = False
            escal.append((esc.severity, n))
        if (
            when is None
            or (decl.applies_when and applies is None)
            or (decl.partly_when and partly is None)
        ):
            return None

        def guard(n: E.Node) -> E.Node:
            return E.And([applies, n], offset=0, type=E.BOOL) if applies is not None else n

        r.cond = guard(when)
        r.partly = guard(partly) if partly is not None else None
        r.escalations = [(sev, E.And([r.cond, n], type=E.BOOL)) for sev, n in escal]
        nodes = [n for n in (applies, when, partly) if n is not None] + [n for _, n in escal]
        reads: list[str] = []
        deps: list[str] = []
        comparisons: list[E.Node] = []
        for n in nodes:
            for x in E.walk(n):
                if isinstance(x, E.Name):
                    if x.scope == "param":
                        r.params.append(x.name)
                    else:
                        reads.append(x.name)
                        if x.scope == "fact":
                            deps.append(x.name)
                        elif x.scope == "derived":
                            deps.extend(input_deps_of.get(x.name, []))
                elif isinstance(x, E.Cmp | E.In):
                    comparisons.append(x)
        r.reads = list(dict.fromkeys(reads))
        r.params = list(dict.fromkeys(r.params))
        r.input_deps = list(dict.fromkeys(deps))
        for _sev, n in escal:
            edeps: list[str] = []
            for x in E.names(n):
                if x.scope == "fact":
                    edeps.append(x.name)
                elif x.scope == "derived":
                    edeps.extend(input_deps_of.get(x.name, []))
            r.esc_input_deps.append(list(dict.fromkeys(edeps)))
        # one trace record per distinct comparison (escalations often repeat the condition's)
        unique: dict[str, E.Node] = {}
        for c in comparisons:
            unique.setdefault(E.unparse(c), c)
        r.comparisons = list(unique.values())

        # templates
        if decl.message:
            shorthand = isinstance(decl.message, Text)
            by_outcome = {"fired": decl.message} if isinstance(decl.message, Text) else decl.message
            for key, text in by_outcome.items():
                where = path + ("message",) if shorthand else path + ("message", key)
                self._check_template(where, text, symbols)
            r.messages = {
                ("met" if k == "fired" and decl.kind == "criterion" else k): v.model_dump()
                for k, v in by_outcome.items()
            }
        if decl.recommendation:
            self._check_template(path + ("recommendation",), decl.recommendation, symbols)
            r.recommendation = decl.recommendation.model_dump()
        for j, item in enumerate(decl.playbook):
            self._check_template(path + ("playbook", j), item, symbols)
        r.playbook = [p.model_dump() for p in decl.playbook]
        return r if ok else None

    def _check_template(
        self, path: tuple[Any, ...], text: Text, symbols: Mapping[str, E.Symbol]
    ) -> None:
        for lang in ("en", "zh"):
            template = getattr(text, lang)
            try:
                names = placeholders(template)
            except ValueError as exc:
                self.err(
                    path + (lang,),
                    "ruleset.bad_template",
                    f"message template: {exc}",
                    "write a literal brace as {{ or }}",
                )
                continue
            for name, _spec in names:
                if name not in symbols:
                    self.err(
                        path + (lang,),
                        "ruleset.unknown_placeholder",
                        f"placeholder `{{{name}}}` names no fact, derived fact, param or outcome",
                        E.suggest(name, symbols),
                    )

    # -- levels
    def _levels(
        self, rules: list[Rule], steps: list[Step], rules_path: tuple[Any, ...]
    ) -> dict[str, int]:
        producers: dict[str, list[Any]] = {v: [] for v in OUTCOME_VARS}
        for r in rules:
            for var, kind in PRODUCED_BY.items():
                if r.kind == kind:
                    producers[var].append(r)
        for s in steps:
            producers["qualification"].append(s)

        def reads_of(item: Any) -> list[str]:
            if isinstance(item, Rule):
                return [n for n in item.reads if n in OUTCOME_VARS]
            if item.node is None:
                return []
            return [n.name for n in E.names(item.node) if n.scope == "outcome"]

        level: dict[int, int] = {}
        var_level: dict[str, int] = {}
        visiting: set[int] = set()

        def item_level(item: Any, chain: list[str]) -> int:
            key = id(item)
            if key in level:
                return level[key]
            label = item.id if isinstance(item, Rule) else f"decision step {item.index + 1}"
            if key in visiting:
                raise _Cycle(chain + [label])
            visiting.add(key)
            lv = 1
            for var in reads_of(item):
                lv = max(lv, 1 + v_level(var, chain + [label, var]))
            visiting.discard(key)
            level[key] = lv
            return lv

        def v_level(var: str, chain: list[str]) -> int:
            if var not in var_level:
                var_level[var] = max((item_level(p, chain) for p in producers[var]), default=0)
            return var_level[var]

        try:
            items: list[Any] = [*rules, *steps]
            for item in items:
                item.level = item_level(item, [])
            for var in OUTCOME_VARS:
                v_level(var, [])
        except _Cycle as cyc:
            self.err(
                rules_path,
                "ruleset.outcome_cycle",
                "rules depend on each other's outcomes in a cycle: " + " → ".join(cyc.chain),
            )
        return var_level

    # -- lowering to durable_rules
    def _lower(
        self, prog: Program, symbols: Mapping[str, E.Symbol], rules_path: tuple[Any, ...]
    ) -> None:
        lw = _Lowering(prog)
        for r in prog.rules:
            lw.add(r.id, "pos", r.level, r.cond, True, r)
            if r.partly is not None:
                lw.add(r.id, "ppos", r.level, r.partly, True, r)
            for j, (_sev, n) in enumerate(r.escalations):
                lw.add(r.id, f"esc{j}", r.level, n, True, r)
        for s in prog.steps:
            if s.node is not None:
                s.engine = lw.add(f"decision.{s.index + 1}", "step", s.level, s.node, True, None)
        for r in prog.rules:
            r.cond_fn = E.closure(r.cond)
            r.partly_fn = E.closure(r.partly) if r.partly is not None else None
            r.esc_fns = [E.closure(n) for _sev, n in r.escalations]
            r.records_fn = E.comparisons_closure(r.comparisons) if r.comparisons else None
        for s in prog.steps:
            s.fn = E.closure(s.node) if s.node is not None else None
        prog.levels = sorted({er.level for er in prog.engine_rules.values()} | {1})
        for slot in prog.slots.values():
            slot.build()
            prog.level_fields.setdefault(slot.level, []).append(slot)
        for d in prog.derived:
            d.fn = E.closure(d.node)
        for r in prog.rules:
            prog.rules_by_level.setdefault(r.level, []).append(r)
            prog.rules_of_kind.setdefault(r.kind, []).append(r)
        prog.step_levels = {s.level for s in prog.steps}
        # the engine's own limits, refused here with a location rather than at run time
        if prog.atom_count > MAX_ATOMS:
            self.err(
                rules_path,
                "ruleset.too_large",
                f"the rules compile to {prog.atom_count} engine conditions; "
                f"the limit is {MAX_ATOMS}",
                "move shared parts into derived facts, or split the ruleset",
            )
        by_id = {r.id: r for r in prog.rules}
        for er in prog.engine_rules.values():
            alone = {"$and": [{STAGE_FIELD: 1}, er.cond]}
            if alpha_stack_bound([alone], 1) <= MAX_ALPHA_STACK:
                continue
            rule = by_id.get(er.owner)
            where = (
                rules_path + (rule.index, "when")
                if rule is not None
                else ("decision", "steps", int(er.owner.split(".")[1]) - 1, "when")
            )
            self.err(
                where,
                "ruleset.too_wide",
                f"one account can meet more than {MAX_ALPHA_STACK - 1} parts of this "
                "condition at once, more than the engine can follow",
                "move groups of comparisons into derived facts",
            )
        for level, slots in sorted(prog.level_fields.items()):
            if len(slots) > MAX_FIELDS:
                self.err(
                    rules_path,
                    "ruleset.too_large",
                    f"evaluation stage {level} reads {len(slots)} values; the engine takes at "
                    f"most {MAX_FIELDS} in one fact",
                    "combine facts into derived facts",
                )


class _Cycle(Exception):
    def __init__(self, chain: list[str]):
        self.chain = chain


class _Lowering:
    """Turns Kleene conditions into durable_rules conditions in negation normal form.

    In NNF every negation sits on a comparison, where it flips the operator; the engine
    treats a comparison on an absent field as false, so the two-valued result of the NNF
    condition is true exactly when the Kleene value of the original is true.
    """

    def __init__(self, prog: Program):
        self.prog = prog
        self.by_name: dict[str, Slot] = {}
        self.by_node: dict[int, Slot] = {}
        self.level = 1

    def add(
        self, owner: str, role: str, level: int, node: E.Node, positive: bool, rule: Rule | None
    ) -> str:
        self.level = level
        cond = self.lower(node, positive)
        name = f"r{len(self.prog.engine_rules)}"
        self.prog.engine_rules[name] = EngineRule(name, level, cond, node, positive, owner, role)
        self.prog.atom_count += _atoms(cond)
        if rule is not None:
            rule.engine[role] = name
        return name

    def _slot_for_name(self, name: str, type_: E.Type) -> str:
        key = f"{name}@{self.level}"
        s = self.by_name.get(key)
        if s is None:
            s = Slot(f"f{len(self.prog.slots)}", self.level, name=name, type=type_)
            self.by_name[key] = s
            self.prog.slots[s.field] = s
        return s.field

    def _slot_for_node(self, node: E.Node, diff: tuple[E.Node, E.Node] | None = None) -> str:
        key = id(node) * 31 + self.level
        s = self.by_node.get(key)
        if s is None:
            t = E.NUMBER if diff is not None else node.type
            s = Slot(f"f{len(self.prog.slots)}", self.level, node=node, diff=diff, type=t)
            self.by_node[key] = s
            self.prog.slots[s.field] = s
        return s.field

    def operand(self, n: E.Node) -> tuple[str, Any]:
        """('const', value) or ('field', field name)."""
        if isinstance(n, E.Const):
            return "const", n.value
        if isinstance(n, E.Name):
            if n.scope == "param":
                return "const", n.value
            return "field", self._slot_for_name(n.name, n.type)
        return "field", self._slot_for_node(n)

    def lower(self, n: E.Node, positive: bool) -> dict[str, Any]:
        if isinstance(n, E.And | E.Or):
            is_and = isinstance(n, E.And) == positive
            parts = [self.lower(i, positive) for i in n.items]
            return parts[0] if len(parts) == 1 else {"$and" if is_and else "$or": parts}
        if isinstance(n, E.Not):
            return self.lower(n.operand, not positive)
        if isinstance(n, E.Const):
            return TRUE_COND if bool(n.value) == positive else FALSE_COND
        if isinstance(n, E.Name):  # a boolean fact used as a condition
            if n.scope == "param":
                return TRUE_COND if bool(n.value) == positive else FALSE_COND
            return {self._slot_for_name(n.name, n.type): 1 if positive else 0}
        if isinstance(n, E.Cmp):
            return self._cmp(n, positive)
        if isinstance(n, E.In):
            if isinstance(n.container, E.ListLit):
                kind, v = self.operand(n.item)
                inside = positive != n.negated
                if kind == "const":
                    return TRUE_COND if ((v in n.container.values) == inside) else FALSE_COND
                if not n.container.values:
                    return FALSE_COND if inside else TRUE_COND
                atoms = [self._atom("==" if inside else "!=", v, c) for c in n.container.values]
                return atoms[0] if len(atoms) == 1 else {"$or" if inside else "$and": atoms}
            return {self._slot_for_node(n): 1 if positive else 0}
        if isinstance(n, E.Call):
            if n.func == "at_least":
                groups = E.at_least_expansion(n, negate=not positive)
                ors = []
                for g in groups:
                    parts = [self.lower(c, pol) for c, pol in g]
                    ors.append(parts[0] if len(parts) == 1 else {"$and": parts})
                return ors[0] if len(ors) == 1 else {"$or": ors}
            return {self._slot_for_node(n): 1 if positive else 0}
        raise TypeError(f"cannot lower {n!r}")

    def _cmp(self, n: E.Cmp, positive: bool) -> dict[str, Any]:
        op = n.op if positive else E.NEGATED_OP[n.op]
        lk, lv = self.operand(n.left) if _simple(n.left) else ("field", None)
        rk, rv = self.operand(n.right) if _simple(n.right) else ("field", None)
        if _simple(n.left) and _simple(n.right):
            if lk == "const" and rk == "const":
                res = E.compare(op, lv, rv)
                return TRUE_COND if res else FALSE_COND
            if lk == "field" and rk == "const":
                return self._atom(op, str(lv), rv)
            if lk == "const" and rk == "field":
                return self._atom(E.FLIPPED_OP[op], str(rv), lv)
        if n.left.type == E.NUMBER:
            # both sides computed: compare rnd(rnd(a) - rnd(b)) with 0, in Python's precision
            lconst = isinstance(n.left, E.Const) or (
                isinstance(n.left, E.Name) and n.left.scope == "param"
            )
            rconst = isinstance(n.right, E.Const) or (
                isinstance(n.right, E.Name) and n.right.scope == "param"
            )
            if rconst and not lconst:
                return self._atom(op, self._slot_for_node(n.left), E.rnd(self.operand(n.right)[1]))
            if lconst and not rconst:
                return self._atom(
                    E.FLIPPED_OP[op], self._slot_for_node(n.right), E.rnd(self.operand(n.left)[1])
                )
            return self._atom(op, self._slot_for_node(n, diff=(n.left, n.right)), 0)
        return {self._slot_for_node(n): 1 if positive else 0}

    def _atom(self, op: str, field_name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            value = 1 if value else 0
        elif isinstance(value, float):
            value = E.rnd(value)
        if op == "==":
            return {field_name: value}
        return {_OP[op]: {field_name: value}}


def _constant_value(n: E.Node) -> Any:
    """The value of a literal or param, or of arithmetic over them; None if per-account."""
    if isinstance(n, E.Const) or (isinstance(n, E.Name) and n.scope == "param"):
        return n.value
    if isinstance(n, E.Neg):
        v = _constant_value(n.operand)
        return -v if isinstance(v, int | float) and not isinstance(v, bool) else None
    if isinstance(n, E.Arith):
        a, b = _constant_value(n.left), _constant_value(n.right)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b)):
            return None
        return E.evaluate(n, {})
    return None


def _rounded(n: E.Node) -> bool:
    """Is this operand rounded to comparison precision (derived or computed, not a fact)?"""
    if isinstance(n, E.Name):
        return n.scope in ("derived", "outcome")
    return _constant_value(n) is None and not isinstance(n, E.Const)


def _simple(n: E.Node) -> bool:
    return isinstance(n, E.Const | E.Name)


def _atoms(cond: Any) -> int:
    if isinstance(cond, dict):
        if "$and" in cond or "$or" in cond:
            return sum(_atoms(c) for c in next(iter(cond.values())))
        return 1
    return 0


def _fact_type(decl: FactDecl) -> E.Type:
    if decl.type in ("integer", "number"):
        return E.NUMBER
    if decl.type == "boolean":
        return E.BOOL
    if decl.type == "enum":
        return E.Type("string", tuple(decl.values or ()))
    if decl.type == "list":
        return E.Type("list", tuple(decl.values or ()))
    return E.STRING


def _param_type(value: Any) -> E.Type:
    if isinstance(value, bool):
        return E.BOOL
    if isinstance(value, int | float):
        return E.NUMBER
    if isinstance(value, list):
        return E.Type("listlit:string", tuple(str(v) for v in value))
    return E.Type("string", (value,))
