"""Compile a ruleset in named, ordered stages.

The stages, in order (:data:`STAGES`):

1. **parse** — YAML with positions, bounded (`engine.lang.source`);
2. **shape** — the document against the ruleset models (`engine.lang.shape`);
3. **resolve** — declare every name: facts, params, outcome variables, derived facts;
4. **check** — parse and type-check every expression and template, assemble the rules
   and decision steps (what each reads, its comparisons, its texts);
5. **order** — order rules and decision steps into evaluation levels by the outcomes
   they read;
6. **lower** — conditions into durable_rules conditions (`engine.lang.lower`), and the
   engine's limits checked with a location.

Each stage reports every problem it finds. The pipeline stops after parse, shape,
check, order and lower when they found any, so no stage runs on input a failed one
left broken; resolve and check report together (a name that fails to declare also
shows where it is used).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Diagnostic, RulesetError
from engine.hints import suggest
from engine.lang import expr as E
from engine.lang.lower import Lowering
from engine.lang.model import (
    NAME_PATTERN,
    PORTFOLIO_METRICS,
    SEVERITY_RANK,
    FactDecl,
    ParamDecl,
    RuleDecl,
    RulesetDoc,
    Text,
)
from engine.lang.program import (
    OUTCOME_VARS,
    PRODUCED_BY,
    RESERVED,
    Compiled,
    Derived,
    PlaybookEntry,
    Program,
    Rule,
    RulePart,
    Step,
)
from engine.lang.shape import check_shape, looks_numeric
from engine.lang.source import Source, read_yaml, source_digest
from engine.lang.templates import doubled_word, placeholders
from engine.runtime._durable import (
    MAX_ALPHA_STACK,
    MAX_ATOMS,
    MAX_FIELDS,
    STAGE_FIELD,
    alpha_stack_bound,
)

STAGES = ("parse", "shape", "resolve", "check", "order", "lower")


def compile_source(file: str, text: str) -> Compiled:
    """Run every stage on one ruleset file; raises RulesetError with all diagnostics."""
    src = parse(file, text)
    doc = check_shape(src)
    c = _Compiler(src, doc)
    for unit in c.units:
        c.resolve(unit)
    for unit in c.units:
        c.check(unit)
    c.stop_if_failed()
    for unit in c.units:
        c.order(unit)
    c.stop_if_failed()
    for unit in c.units:
        c.lower(unit)
    c.stop_if_failed()
    return c.compiled(text)


def parse(file: str, text: str) -> Source:
    """Stage "parse": the YAML tree with positions, or RulesetError."""
    src, diags = read_yaml(file, text)
    if diags or src is None:
        raise RulesetError(diags)
    return src


@dataclass
class _Unit:
    """One program being compiled: the account's, or the portfolio's."""

    facts: Mapping[str, FactDecl]
    params: Mapping[str, ParamDecl]
    derived_decls: Mapping[str, Any]
    rule_decls: list[RuleDecl]
    step_decls: list[Any]
    rules_path: tuple[Any, ...]
    base: tuple[Any, ...]  # () for the account, ("portfolio",) for the portfolio
    symbols: dict[str, E.Symbol] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)
    words: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # unit words
    seen_names: dict[str, str] = field(default_factory=dict)
    derived_nodes: dict[str, E.Node] = field(default_factory=dict)
    derived: list[Derived] = field(default_factory=list)
    input_deps_of: dict[str, list[str]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    program: Program | None = None


class _Compiler:
    def __init__(self, src: Source, doc: RulesetDoc):
        self.src = src
        self.doc = doc
        self.diags: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []  # reported by `kaq check`, never block a load
        self.words: Mapping[str, Mapping[str, tuple[str, str]]] = {}
        self.units = [
            _Unit(
                doc.facts,
                doc.params,
                doc.derived,
                doc.rules,
                doc.decision.steps,
                ("rules",),
                (),
            )
        ]
        if doc.portfolio is not None:
            self.units.append(
                _Unit(
                    doc.portfolio.facts,
                    {**doc.params, **doc.portfolio.params},
                    {},
                    doc.portfolio.rules,
                    [],
                    ("portfolio", "rules"),
                    ("portfolio",),
                )
            )

    def stop_if_failed(self) -> None:
        if self.diags:
            raise RulesetError(self.diags)

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
                            f"places before it is compared, so a threshold of `{shown}` "
                            f"({value!r}), finer than that, works like the nearest "
                            f"{E.ROUND_DIGITS}-decimal values around it",
                            f"write the threshold with at most {E.ROUND_DIGITS} decimals",
                        )

    def warn_expr(
        self, path: tuple[Any, ...], offset: int, code: str, message: str, hint: str
    ) -> None:
        line, col = self.src.expr_position(path, offset)
        self.warnings.append(Diagnostic(self.src.file, line, col, code, message, hint))

    # -- stage "resolve": every name declared once
    def resolve(self, u: _Unit) -> None:
        doc = self.doc
        for name, decl in u.facts.items():
            if self._declare(u, name, u.base + ("facts", name), "fact"):
                u.symbols[name] = E.Symbol("fact", _fact_type(decl))
                u.units[name] = decl.unit
                if decl.unit_word is not None:
                    u.words[name] = decl.unit_word.forms()
        own = doc.portfolio.params if u.base and doc.portfolio else doc.params
        for name, p in u.params.items():
            ppath = (
                ("portfolio", "params", name)
                if u.base and name in (doc.portfolio.params if doc.portfolio else {})
                else ("params", name)
            )
            # the portfolio program sees the top-level params too: each is checked once
            if name in own and isinstance(p.value, str) and looks_numeric(p.value):
                self.err(
                    ppath + ("value",),
                    "ruleset.param_type",
                    f"param `{name}` is the text `{p.value}`, not a number",
                    f"write the number alone: `value: {looks_numeric(p.value)}`",
                )
            if self._declare(u, name, ppath, "param"):
                u.symbols[name] = E.Symbol("param", _param_type(p.value), p.value)
                u.units[name] = p.unit
                if p.unit_word is not None:
                    u.words[name] = p.unit_word.forms()
        if not u.base:
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
                u.symbols[var] = E.Symbol("outcome", t)
                u.units[var] = "points" if var == "score" else None
        # derived facts are declared here and type-checked in dependency order by `check`
        for name, d in u.derived_decls.items():
            if not self._declare(u, name, ("derived", name), "derived fact"):
                continue
            u.units[name] = d.unit
            if d.unit_word is not None:
                u.words[name] = d.unit_word.forms()
            try:
                u.derived_nodes[name] = E.parse(d.expr)
            except E.ExprError as exc:
                self.expr_err(("derived", name, "expr"), exc)

    def _declare(self, u: _Unit, name: str, path: tuple[Any, ...], what: str) -> bool:
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
        if name in u.seen_names:
            self.err_key(
                path,
                "ruleset.duplicate_name",
                f"`{name}` is already declared as a {u.seen_names[name]}",
            )
            return False
        u.seen_names[name] = what
        return True

    # -- stage "check": expressions and templates type-checked, rules and steps assembled
    def check(self, u: _Unit) -> None:
        self.words = u.words  # the unit words `{name:word}` placeholders write
        if u.base:
            self._check_portfolio_measures()
        self._check_derived(u)
        if not u.base and self.doc.advice is not None:
            self._check_advice(u)
        ids: dict[str, int] = {}
        for i, rdecl in enumerate(u.rule_decls):
            path = u.rules_path + (i,)
            if rdecl.id in ids:
                self.err(
                    path + ("id",),
                    "ruleset.duplicate_rule_id",
                    f"rule id `{rdecl.id}` is already used by rule #{ids[rdecl.id] + 1} "
                    f"(line {self.src.position(u.rules_path + (ids[rdecl.id], 'id'))[0]})",
                    "rule ids must be unique: rename one of them",
                )
                continue
            ids[rdecl.id] = i
            r = self._rule(rdecl, i, path, u.symbols, u.units, u.input_deps_of, u.params)
            if r is not None:
                u.rules.append(r)
        self._check_weights(u)
        self._check_steps(u)

    def _check_advice(self, u: _Unit) -> None:
        doc = self.doc
        advice = doc.advice
        assert advice is not None
        for key in ("ladder", "playbook_for"):
            for i, q in enumerate(getattr(advice, key)):
                if q not in doc.qualifications:
                    self.err(
                        ("advice", key, i),
                        "ruleset.unknown_qualification",
                        f"unknown qualification `{q}`",
                        suggest(q, doc.qualifications, "declare it under `qualifications:`"),
                    )
        if len(set(advice.ladder)) != len(advice.ladder):
            self.err(
                ("advice", "ladder"), "ruleset.shape", "a qualification is twice on the ladder"
            )
        for q, text in advice.recommendations.items():
            if q not in doc.qualifications:
                self.err_key(
                    ("advice", "recommendations", q),
                    "ruleset.unknown_qualification",
                    f"unknown qualification `{q}`",
                    suggest(q, doc.qualifications, "declare it under `qualifications:`"),
                )
            self._check_template(("advice", "recommendations", q), text, u.symbols)

    def _check_portfolio_measures(self) -> None:
        doc = self.doc
        port = doc.portfolio
        assert port is not None
        for key in ("revenue", "margin_pct"):
            name = getattr(port, key)
            decl = doc.facts.get(name)
            if decl is None or decl.type not in ("number", "integer"):
                self.err(
                    ("portfolio", key),
                    "ruleset.portfolio_measure",
                    f"`{key}: {name}` must name a number fact of the account"
                    + ("" if decl is None else f" (`{name}` is a {decl.type})"),
                    suggest(
                        name, [n for n, d in doc.facts.items() if d.type in ("number", "integer")]
                    ),
                )
        for key, i, q in [("smb", i, q) for i, q in enumerate(port.smb)] + [
            ("unqualified", i, q) for i, q in enumerate(port.unqualified)
        ]:
            if q not in doc.qualifications:
                self.err(
                    ("portfolio", key, i),
                    "ruleset.unknown_qualification",
                    f"unknown qualification `{q}`",
                    suggest(q, doc.qualifications, "declare it under `qualifications:`"),
                )

        if port.smb_dropped is not None:
            inputs = [n for n in port.facts if n not in PORTFOLIO_METRICS]
            decl = port.facts.get(port.smb_dropped)
            if port.smb_dropped not in inputs or decl is None or decl.type != "number":
                self.err(
                    ("portfolio", "smb_dropped"),
                    "ruleset.portfolio_measure",
                    f"`smb_dropped: {port.smb_dropped}` must name a number input of "
                    "`portfolio.facts` (not a metric kaq computes)",
                    suggest(port.smb_dropped, inputs),
                )

    def _check_derived(self, u: _Unit) -> None:
        for name in self._derived_order(u.derived_nodes, u.symbols):
            node = u.derived_nodes[name]
            try:
                t = E.check(
                    node,
                    {k: v for k, v in u.symbols.items() if v.scope != "outcome"},
                    want_bool=False,
                )
            except E.ExprError as exc:
                self.expr_err(("derived", name, "expr"), exc)
                continue
            u.symbols[name] = E.Symbol("derived", t)
            if name in u.words and t.kind != "number":
                self.err(
                    ("derived", name, "unit_word"),
                    "ruleset.shape",
                    f"`unit_word` only applies to numbers; `{name}` is a {t.kind}",
                    "leave `unit_word` out",
                )
            self.lint(("derived", name, "expr"), node)
            deps: list[str] = []
            for n in E.names(node):
                if n.scope == "fact":
                    deps.append(n.name)
                elif n.scope == "derived":
                    deps.extend(u.input_deps_of.get(n.name, []))
            u.input_deps_of[name] = list(dict.fromkeys(deps))
            u.derived.append(Derived(name, node, u.units.get(name), u.input_deps_of[name]))

    def _check_weights(self, u: _Unit) -> None:
        criteria = [r for r in u.rules if r.kind == "criterion"]
        total = sum(r.weight for r in criteria)
        if not criteria or self.diags or abs(total - 100) <= 1e-9:
            return
        where = u.rules_path + (criteria[0].index, "weight")
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

    def _check_steps(self, u: _Unit) -> None:
        doc, steps = self.doc, u.step_decls
        for i, s in enumerate(steps):
            path = ("decision", "steps", i)
            if s.qualification not in doc.qualifications:
                self.err(
                    path + ("qualification",),
                    "ruleset.unknown_qualification",
                    f"unknown qualification `{s.qualification}`",
                    suggest(
                        s.qualification, doc.qualifications, "declare it under `qualifications:`"
                    ),
                )
            step_node: E.Node | None = None
            if s.when is not None:
                step_node = self.parse(path + ("when",), s.when, u.symbols)
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
                self._check_template(path + ("reason",), s.reason, u.symbols)
            u.steps.append(Step(i, step_node, s.qualification, reason))
        if steps and steps[-1].when is not None:
            self.err(
                ("decision", "steps", len(steps) - 1),
                "ruleset.decision_incomplete",
                "the last decision step needs no `when`, so that every account gets a "
                "qualification",
                "add a final step with only `qualification:`",
            )

    # -- stage "order": evaluation levels
    def order(self, u: _Unit) -> None:
        var_level = self._levels(u.rules, u.steps, u.rules_path)
        u.program = Program(
            facts=dict(u.facts),
            params={k: p.value for k, p in u.params.items()},
            units=u.units,
            words=u.words,
            derived=u.derived,
            rules=u.rules,
            steps=u.steps,
            levels=[],
            engine_rules={},
            slots={},
            level_fields={},
            var_level=var_level,
            atom_count=0,
        )

    # -- stage "lower": durable_rules conditions, the closures, the engine's limits
    def lower(self, u: _Unit) -> None:
        prog = u.program
        assert prog is not None
        lw = Lowering(prog)
        for r in prog.rules:
            lw.add(r.id, "pos", r.level, r.cond, True, r)
            if r.partly is not None:
                lw.add(r.id, "ppos", r.level, r.partly, True, r)
            for j, (_sev, n) in enumerate(r.escalations):
                lw.add(r.id, f"esc{j}", r.level, n, True, r)
            for j, part in enumerate(r.parts):
                lw.add(r.id, f"part{j}", r.level, part.node, True, r)
        for s in prog.steps:
            if s.node is not None:
                s.engine = lw.add(f"decision.{s.index + 1}", "step", s.level, s.node, True, None)
        for r in prog.rules:
            r.cond_fn = E.closure(r.cond)
            r.partly_fn = E.closure(r.partly) if r.partly is not None else None
            r.esc_fns = [E.closure(n) for _sev, n in r.escalations]
            for part in r.parts:
                part.fn = E.closure(part.node)
            for item in r.playbook:
                item.done_fn = E.closure(item.done) if item.done is not None else None
            r.records_fn = E.comparisons_closure(r.comparisons) if r.comparisons else None
        for s in prog.steps:
            s.fn = E.closure(s.node) if s.node is not None else None
        prog.levels = sorted({er.level for er in prog.engine_rules.values()} | {1})
        for slot in prog.slots.values():
            prog.level_fields.setdefault(slot.level, []).append(slot)
        for d in prog.derived:
            d.fn = E.closure(d.node)
        for r in prog.rules:
            prog.rules_by_level.setdefault(r.level, []).append(r)
            prog.rules_of_kind.setdefault(r.kind, []).append(r)
        prog.step_levels = {s.level for s in prog.steps}
        self._limits(prog, u.rules_path)

    def _limits(self, prog: Program, rules_path: tuple[Any, ...]) -> None:
        """The engine's own limits, refused here with a location rather than at run time."""
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

    # -- the result
    def compiled(self, text: str) -> Compiled:
        doc = self.doc
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
        # the facts' own short names ("@" is no fact name): for lists of facts people read
        labels["@facts"] = {
            n: d.label.model_dump() for n, d in doc.facts.items() if d.label is not None
        }
        missing = {n: d.missing.model_dump() for n, d in doc.facts.items() if d.missing}
        missing.update({n: d.missing.model_dump() for n, d in doc.derived.items() if d.missing})
        digest = source_digest(text)
        account = self.units[0].program
        portfolio = self.units[1].program if len(self.units) > 1 else None
        assert account is not None
        return Compiled(
            doc, self.src, account, portfolio, labels, digest, missing, sorted(self.warnings)
        )

    # -- parts of the stages
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
                suggest(decl.segment or "", doc.segments, "declare it under `segments:`"),
            )
            ok = False
        if decl.kind == "stage" and decl.stage not in doc.stages:
            self.err(
                path + ("stage",),
                "ruleset.unknown_stage",
                f"unknown stage `{decl.stage}`",
                suggest(decl.stage or "", doc.stages, "declare it under `stages:`"),
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
                        suggest(w, params),
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

        part_nodes: list[E.Node | None] = [
            self.parse(path + ("parts", j, "when"), part.when, symbols)
            for j, part in enumerate(decl.parts)
        ]
        if decl.parts:
            when = (
                None
                if any(n is None for n in part_nodes)
                else (
                    part_nodes[0]
                    if len(part_nodes) == 1
                    else E.Or([n for n in part_nodes if n is not None], type=E.BOOL)
                )
            )
        else:
            assert decl.when is not None
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
        r.esc_texts = [
            (
                esc.message.model_dump() if esc.message else None,
                esc.recommendation.model_dump() if esc.recommendation else None,
            )
            for esc in decl.escalate
        ]
        r.scope = self._scope([when])
        for j, (part, node) in enumerate(zip(decl.parts, part_nodes, strict=True)):
            assert node is not None
            r.parts.append(
                RulePart(
                    part.id or f"part{j + 1}",
                    guard(node),
                    self._scope([node]),
                    part.message.model_dump() if part.message else None,
                    part.recommendation.model_dump() if part.recommendation else None,
                )
            )
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
        for j, esc in enumerate(decl.escalate):
            for key in ("message", "recommendation"):
                text = getattr(esc, key)
                if text is not None:
                    self._check_template(path + ("escalate", j, key), text, symbols)
        for j, part in enumerate(decl.parts):
            for key in ("message", "recommendation"):
                text = getattr(part, key)
                if text is not None:
                    self._check_template(path + ("parts", j, key), text, symbols)
        for j, item in enumerate(decl.playbook):
            text = Text(en=item.en, zh=item.zh)
            self._check_template(path + ("playbook", j), text, symbols)
            done = (
                self.parse(path + ("playbook", j, "done_when"), item.done_when, symbols)
                if item.done_when
                else None
            )
            if item.done_when and done is None:
                ok = False
            r.playbook.append(PlaybookEntry(text.model_dump(), done))
        return r if ok else None

    def _scope(self, nodes: list[E.Node | None]) -> str:
        """ "company" when every fact the conditions read is declared `scope: company`."""
        facts = self.doc.facts
        read = [x.name for n in nodes if n is not None for x in E.names(n) if x.scope == "fact"]
        company = bool(read) and all(facts[f].scope == "company" for f in read if f in facts)
        return "company" if company else "account"

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
            for name, spec in names:
                if name not in symbols:
                    self.err(
                        path + (lang,),
                        "ruleset.unknown_placeholder",
                        f"placeholder `{{{name}}}` names no fact, derived fact, param or outcome",
                        suggest(name, symbols),
                    )
                elif spec == "word" and lang not in self.words.get(name, {}):
                    self.err(
                        path + (lang,),
                        "ruleset.bad_template",
                        f"`{{{name}:word}}` writes the unit word of `{name}`, which declares "
                        f"none in `{lang}`",
                        f"give `{name}` a `unit_word` with `{lang}`, or write `{{{name}}}`",
                    )
            doubled = doubled_word(template, self.words, lang)
            if doubled:
                self.err(
                    path + (lang,),
                    "ruleset.doubled_unit_word",
                    f"`{{{doubled[0]}:word}}` is followed by `{doubled[1]}`, the word it writes",
                    f"write `{{{doubled[0]}:word}}` or `{{{doubled[0]}}}{doubled[1]}`, not both",
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


class _Cycle(Exception):
    def __init__(self, chain: list[str]):
        self.chain = chain


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
