"""Decide: one account's facts into a :class:`Decision`, with the engine deciding.

A :class:`Plan` is built once per compiled program. It flattens what an evaluation walks
(stage slots by encoding, rules per stage, outcome variables per stage) into tuples, so the
per-account work is a few tight loops instead of a call per slot and per rule. durable_rules
decides which rules fire; the Kleene closures must agree (any disagreement raises
EngineError) and tell `not_fired` from `not_evaluable`.

A Decision is everything a verdict decides and nothing it only says: no message, no trace,
no comparison record. Batch views, the decision log, impact analysis and what-if searches
stop here; `engine.runtime.explain` turns a Decision into the full verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, EvaluationError
from engine.lang import expr as E
from engine.lang.lower import fields as lowered_fields
from engine.lang.model import SEVERITY_RANK
from engine.lang.program import OUTCOME_VARS, Program, Rule, Slot
from engine.limits import MAX_MAGNITUDE
from engine.runtime._durable import EngineRuleset, encoder_for

_Encoder = Callable[[Mapping[str, Any]], list[str]]
# the kinds of rule whose outcomes the decision steps read (through the outcome variables)
_DECIDING = frozenset({"criterion", "segment", "stage"})
_SCREEN_PLANS = 65536  # sets of changed facts whose screen plan is kept (see Plan.screen_plan)


@dataclass(frozen=True, slots=True)
class RulesetRef:
    """Which ruleset decided: its name, version and the digest of its source."""

    name: str
    version: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "digest": self.digest}


@dataclass(slots=True)
class Decision:
    """What one evaluation decided (engine-decided, explanation-checked), without texts."""

    ruleset: RulesetRef
    facts: Mapping[str, Any]  # the validated input facts, as given
    env: dict[str, Any]  # facts, derived values and outcome variables, as the rules read them
    outcomes: dict[str, str]  # rule id -> fired / not_fired / not_evaluable
    criteria: dict[str, tuple[str, Any]]  # criterion id -> (met / partly_met / ..., points)
    severities: dict[str, str]  # fired guardrail id -> severity
    undecided: dict[str, list[int]]  # fired rule id -> escalations left unknown
    step: int | None  # the decision step taken (0-based)
    missing_facts: list[str]  # input facts that would decide what is not evaluable
    parts: dict[str, tuple[bool | None, ...]]  # fired rule with parts -> each part's value
    scopes: dict[str, str]  # fired guardrail id -> "account" / "company" (policy §6)

    @property
    def account_id(self) -> Any:
        return self.facts.get("account_id")

    @property
    def qualification(self) -> Any:
        return self.env.get("qualification")

    @property
    def score(self) -> Any:
        return num(self.env.get("score", 0))

    @property
    def segments(self) -> list[str]:
        return list(self.env.get("segments", []))

    @property
    def stage(self) -> Any:
        return self.env.get("stage")

    def to_dict(self) -> dict[str, Any]:
        """The `decision` view (api.md, Views): plain data, no texts."""
        outcomes = {
            rid: (self.criteria[rid][0] if rid in self.criteria else out)
            for rid, out in self.outcomes.items()
        }
        return {
            "account_id": self.account_id,
            "ruleset": self.ruleset.to_dict(),
            "qualification": self.qualification,
            "score": self.score,
            "segments": self.segments,
            "stage": self.stage,
            "missing_facts": list(self.missing_facts),
            "outcomes": outcomes,
            "points": {rid: pts for rid, (_o, pts) in self.criteria.items()},
            "severities": dict(self.severities),
            "scopes": dict(self.scopes),
        }


class Plan:
    """Per-stage work of one program, precomputed; `decide` runs it for one account."""

    def __init__(self, prog: Program, ruleset: RulesetRef):
        self.prog = prog
        self.ruleset = ruleset
        self.derived = tuple((d.name, d.fn) for d in prog.derived)
        # input fact -> the positions of the derived facts that read it (for `Screen`)
        self.derived_of: dict[str, tuple[int, ...]] = {}
        for i, d in enumerate(prog.derived):
            for f in d.input_deps:
                self.derived_of[f] = (*self.derived_of.get(f, ()), i)
        self.vars0 = self._vars_at(0)
        self.levels = tuple(
            (
                level,
                stage_encoder(prog.level_fields.get(level, [])),
                tuple(_rule_plan(r) for r in prog.rules_by_level.get(level, ())),
                level in prog.step_levels,
                self._vars_at(level),
            )
            for level in prog.levels
        )
        # what `confirm` asks the engine: a ruleset of the engine rules the decision reads
        # (criteria, segments, stages and the decision steps; no guardrail), whose stage
        # facts carry only the fields those rules compare. Per level that has such rules:
        # its encoder, the deciding rules' engine names, and whether steps are at it
        deciding = {r.id for r in prog.rules if r.kind in _DECIDING}
        self.confirm_rules: dict[str, tuple[int, Any]] = {
            name: (er.level, er.cond)
            for name, er in prog.engine_rules.items()
            if er.role == "step" or (er.owner in deciding and er.role in ("pos", "ppos"))
        }
        fields: set[str] = set()
        for _level, cond in self.confirm_rules.values():
            fields |= lowered_fields(cond)
        self.confirm_levels = tuple(
            (
                level,
                stage_encoder([s for s in prog.level_fields.get(level, []) if s.field in fields]),
                tuple(
                    (r.id, r.kind, r.engine["pos"], r.engine.get("ppos"))
                    for r in prog.rules_by_level.get(level, ())
                    if r.kind in _DECIDING
                ),
                level in prog.step_levels,
            )
            for level in sorted({lv for lv, _c in self.confirm_rules.values()})
        )
        self.criteria = tuple(
            (r.id, bool(r.decl.required), *points(r))
            for r in prog.rules_of_kind.get("criterion", ())
        )
        self.criterion_points = {rid: (req, full, half) for rid, req, full, half in self.criteria}
        self.criterion_ids = tuple(rid for rid, *_ in self.criteria)
        self.required_ids = tuple(rid for rid, req, *_ in self.criteria if req)
        self.segment_rules = tuple(
            (r.id, r.decl.segment) for r in prog.rules_of_kind.get("segment", ())
        )
        self.stage_rules = tuple((r.id, r.decl.stage) for r in prog.rules_of_kind.get("stage", ()))
        # the screen's plan: per level, the rules the decision reads (criteria, segments,
        # stages) by the input facts they depend on, and those that read an outcome
        # variable (evaluated again whatever changed)
        screen_levels = []
        for level in prog.levels:
            by_fact: dict[str, list[tuple[Any, ...]]] = {}
            always: list[tuple[Any, ...]] = []
            for r in prog.rules_by_level.get(level, ()):
                if r.kind not in _DECIDING:
                    continue
                entry = (r.id, r.cond_fn, r.partly_fn)
                if any(n in OUTCOME_VARS for n in r.reads):
                    always.append(entry)
                for f in r.input_deps:
                    by_fact.setdefault(f, []).append(entry)
            screen_levels.append(
                (
                    level,
                    {f: tuple(v) for f, v in by_fact.items()},
                    tuple(always),
                    level in prog.step_levels,
                    self._vars_at(level),
                )
            )
        self.screen_levels = tuple(screen_levels)
        # per set of changed facts (a fact alone, or the pair of a two-fact path): the
        # derived facts to make again, in their order, and per level the rules to evaluate
        # again; made on first use (`screen_plan`), so a screen only looks them up
        self._screen_plans: dict[Any, tuple[tuple[int, ...], tuple[tuple[Any, ...], ...]]] = {}
        self.segment_ids = frozenset(rid for rid, _seg in self.segment_rules)
        self.stage_ids = frozenset(rid for rid, _st in self.stage_rules)
        # what decides the missing facts of each rule: its input facts, and per escalation
        self.deps = {
            r.id: (tuple(r.input_deps), tuple(tuple(d) for d in r.esc_input_deps))
            for r in prog.rules
        }

    def screen_plan(self, changed: Any) -> tuple[tuple[int, ...], tuple[tuple[Any, ...], ...]]:
        """What a screen changing these facts (one fact's name, or a frozenset of several)
        evaluates again: the positions of the derived facts that read them, in order, and
        per level the rules that read them or an outcome variable."""
        held = self._screen_plans.get(changed)
        if held is not None:
            return held
        facts = sorted(changed) if isinstance(changed, frozenset) else [changed]
        redo = tuple(sorted({i for f in facts for i in self.derived_of.get(f, ())}))
        per_level = []
        for _level, by_fact, always, _step, _vars in self.screen_levels:
            rules = list(always)
            for f in facts:
                rules += [e for e in by_fact.get(f, ()) if e not in rules]
            per_level.append(tuple(rules))
        made = (redo, tuple(per_level))
        if len(self._screen_plans) < _SCREEN_PLANS:  # bounded: facts and pairs of facts
            self._screen_plans[changed] = made
        return made

    def _vars_at(self, level: int) -> tuple[bool, bool, bool] | None:
        vl = self.prog.var_level
        flags = (vl.get("score") == level, vl.get("segments") == level, vl.get("stage") == level)
        return flags if any(flags) else None

    def decide(self, engine: EngineRuleset, facts: Mapping[str, Any]) -> Decision:
        """Evaluate validated facts; the engine decides what fires, the closures check it."""
        prog = self.prog
        env: dict[str, Any] = dict(facts)
        for name, fn in self.derived:
            v = fn(env)
            if v is not None:
                env[name] = E.rnd(v)
        outcomes: dict[str, str] = {}
        partly: dict[str, bool] = {}
        severity: dict[str, str] = {}
        undecided: dict[str, list[int]] = {}
        criteria: dict[str, tuple[str, Any]] = {}
        parts: dict[str, tuple[bool | None, ...]] = {}
        scopes: dict[str, str] = {}
        fired_all: set[str] = set()
        unknown: list[str] = []  # the rules not evaluable, in order
        step_index: int | None = None
        if self.vars0 is not None:
            self._outcome_vars(env, outcomes, partly, criteria, self.vars0)
        with engine.session() as session:
            for level, encode, rules, is_step_level, vars_ in self.levels:
                fired = set(session.assert_level(level, encode(env)))
                fired_all |= fired
                for rid, pos_name, cond_fn, ppart, escs, default_sev, rparts, scope in rules:
                    # durable_rules decides what fired; the Kleene explanation must agree,
                    # and tells not_fired (false) from not_evaluable (unknown).
                    pos = pos_name in fired
                    k = cond_fn(env)
                    if pos is not (k is True):
                        raise EngineError(
                            f"{rid}: the engine fired={pos}, the explanation says {k}"
                        )
                    if pos:
                        outcome = "fired"
                    else:
                        outcome = "not_fired" if k is False else "not_evaluable"
                        if ppart is not None:
                            ppos = ppart[0] in fired
                            kp = ppart[1](env)
                            if ppos is not (kp is True):
                                raise EngineError(
                                    f"{rid}: the engine fired={ppos} for partly_when, "
                                    f"explanation {kp}"
                                )
                            partly[rid] = ppos
                            if ppos:
                                outcome = "fired"
                            elif kp is None:
                                outcome = "not_evaluable"
                    outcomes[rid] = outcome
                    if outcome == "not_evaluable":
                        unknown.append(rid)
                    if default_sev is not None and outcome == "fired":
                        best = -1
                        for j, (name, fn, sev, rank) in enumerate(escs):
                            hit = name in fired
                            value = fn(env)
                            if hit is not (value is True):
                                raise EngineError(
                                    f"{rid}: engine and explanation disagree on escalation {j + 1}"
                                )
                            if value is None:
                                undecided.setdefault(rid, []).append(j)
                            if hit and rank > best:
                                best = rank
                                severity[rid] = sev
                        severity.setdefault(rid, default_sev)
                        if rparts:
                            held = []
                            company = True
                            for j, (name, fn, part_scope) in enumerate(rparts):
                                value = fn(env)
                                if (name in fired) is not (value is True):
                                    raise EngineError(
                                        f"{rid}: engine and explanation disagree on part {j + 1}"
                                    )
                                held.append(value)
                                if value is True and part_scope != "company":
                                    company = False
                            parts[rid] = tuple(held)
                            scopes[rid] = "company" if company else "account"
                        else:
                            scopes[rid] = scope
                if is_step_level and step_index is None:
                    step_index = self._step(env, fired_all, level)
                if vars_ is not None:
                    self._outcome_vars(env, outcomes, partly, criteria, vars_)
        if prog.steps and step_index is None:
            step_index = len(prog.steps) - 1
            env["qualification"] = prog.steps[step_index].qualification
        absent: set[str] = set()
        deps = self.deps
        for rid in unknown:
            absent.update(n for n in deps[rid][0] if n not in facts)
        for rid, escalations in undecided.items():
            # an escalation left unknown did not raise the severity: say what would decide it
            for j in escalations:
                absent.update(n for n in deps[rid][1][j] if n not in facts)
        return Decision(
            self.ruleset,
            facts,
            env,
            outcomes,
            criteria,
            severity,
            undecided,
            step_index,
            sorted(absent),
            parts,
            scopes,
        )

    def confirm(self, engine: EngineRuleset, screened: Decision) -> None:
        """Have durable_rules decide the account a screen decided (see :class:`Screen`),
        `engine` being the ruleset of `confirm_rules`: its stage facts are asserted, and
        every rule the decision reads must fire exactly where the screen says it holds
        (met, partly met, a segment, a stage), and the engine must take the decision step
        the screen took; else EngineError. What the screen found is then what the engine
        decides: the score (from the criteria the engine fired) and the qualification
        (from the step it fired)."""
        env = screened.env
        outcomes, criteria = screened.outcomes, screened.criteria
        fired_all: set[str] = set()
        chosen: int | None = None
        score = 0.0
        with engine.session() as session:
            for level, encode, rules, is_step_level in self.confirm_levels:
                fired = set(session.assert_level(level, encode(env)))
                fired_all |= fired
                for rid, kind, pos, ppos in rules:
                    if kind == "criterion":
                        said = criteria[rid][0]
                        said = said if said in ("met", "partly_met") else "no"
                        got = "met" if pos in fired else "partly_met" if ppos in fired else "no"
                        _req, full, half = self.criterion_points[rid]
                        score += full if got == "met" else half if got == "partly_met" else 0
                    else:
                        said = "fired" if outcomes[rid] == "fired" else "no"
                        got = "fired" if pos in fired else "no"
                    if got != said:
                        raise EngineError(f"{rid}: the engine gives {got}, the conditions {said}")
                if is_step_level and chosen is None:
                    chosen = self._fired_step(fired_all, level)
        if chosen is None and self.prog.steps:
            chosen = len(self.prog.steps) - 1
        if chosen != screened.step:
            raise EngineError(
                f"decision: the engine took step {chosen}, the conditions {screened.step}"
            )
        if self.criteria and num(E.rnd(score)) != screened.score:
            raise EngineError(
                f"score: the engine's criteria give {num(E.rnd(score))}, "
                f"the conditions {screened.score}"
            )

    def screener(self, base: Decision) -> Screen:
        """What-if evaluations of one decided account (see :class:`Screen`)."""
        return Screen(self, base)

    def _step_by_conditions(self, env: dict[str, Any], level: int) -> int | None:
        """The first decision step whose condition holds, as `_step` checks the engine's."""
        for s in self.prog.steps:
            if s.level > level:
                break
            if s.fn is None or s.fn(env) is True:
                env["qualification"] = s.qualification
                return s.index
        return None

    def _fired_step(self, fired_all: set[str], level: int) -> int | None:
        """The first decision step the engine fired (or the unconditional one) by `level`."""
        for s in self.prog.steps:
            if s.level > level:
                break
            if s.node is None or s.engine in fired_all:
                return s.index
        return None

    def _step(self, env: dict[str, Any], fired_all: set[str], level: int) -> int | None:
        """The first decision step the engine fired (or the unconditional one), checked."""
        steps = self.prog.steps
        chosen = self._fired_step(fired_all, level)
        for s in steps:  # the explanation's choice must be the engine's
            if s.level > level:
                break
            if s.fn is None or s.fn(env) is True:
                if chosen != s.index:
                    raise EngineError(
                        f"decision: engine chose step {chosen}, explanation step {s.index}"
                    )
                break
        if chosen is not None:
            env["qualification"] = steps[chosen].qualification
        return chosen

    def _outcome_vars(
        self,
        env: dict[str, Any],
        outcomes: Mapping[str, str],
        partly: Mapping[str, bool],
        criteria: dict[str, tuple[str, Any]],
        flags: tuple[bool, bool, bool],
    ) -> None:
        """Outcome variables become known after the level of their last producer."""
        score_now, segments_now, stage_now = flags
        if score_now:
            score = 0.0
            not_met: list[str] = []
            not_eval: list[str] = []
            for rid, required, full, half in self.criteria:
                out = outcomes.get(rid, "not_evaluable")
                result = criterion_result(out, partly.get(rid, False), full, half)
                score += result[1]
                if out != "fired" and required:
                    (not_met if out == "not_fired" else not_eval).append(rid)
                criteria[rid] = result
            env["score"] = num(E.rnd(score))
            env["required_not_met"] = len(not_met)
            env["required_not_evaluable"] = len(not_eval)
            env["required_not_met_rules"] = not_met
            env["required_not_evaluable_rules"] = not_eval
        if segments_now:
            segs = [seg for rid, seg in self.segment_rules if outcomes.get(rid) == "fired"]
            env["segments"] = list(dict.fromkeys(segs))
        if stage_now:
            fired = [(rid, st) for rid, st in self.stage_rules if outcomes.get(rid) == "fired"]
            if len(fired) > 1:
                raise EvaluationError(
                    "stage rules " + " and ".join(f"`{rid}`" for rid, _ in fired) + " all fired: "
                    "an account is in one stage, so stage conditions must exclude each other"
                )
            if fired:
                env["stage"] = fired[0][1]


def _rule_plan(r: Rule) -> tuple[Any, ...]:
    ppart = (r.engine["ppos"], r.partly_fn) if r.partly is not None else None
    escs = tuple(
        (r.engine[f"esc{j}"], r.esc_fns[j], sev, SEVERITY_RANK[sev])
        for j, (sev, _node) in enumerate(r.escalations)
    )
    default = (r.decl.severity or "warning") if r.kind == "guardrail" else None
    parts = tuple((r.engine[f"part{j}"], p.fn, p.scope) for j, p in enumerate(r.parts))
    return (r.id, r.engine["pos"], r.cond_fn, ppart, escs, default, parts, r.scope)


# --------------------------------------------------------------------------- stage facts


def slot_value(slot: Slot) -> Callable[[Mapping[str, Any]], Any]:
    """env -> the value this slot sends to the engine (None: the field is absent).

    A name's value goes as it is (policy §2: input facts are compared exactly as sent;
    derived facts were rounded when they were computed); a hoisted computation is rounded
    like a derived value; `a op b` of two values goes as the difference of the two operands,
    whose sign is exact; lists never reach the engine (membership and counts are hoisted
    into slots of their own).
    """
    if slot.name is not None:
        key = slot.name
        return lambda env: env.get(key)  # names are never lists here
    if slot.diff is not None:
        fa, fb = E.operand_closure(slot.diff[0]), E.operand_closure(slot.diff[1])

        def difference(env: Mapping[str, Any]) -> Any:
            a, b = fa(env), fb(env)
            return None if a is None or b is None else a - b

        return difference
    assert slot.node is not None
    f = E.closure(slot.node)

    def computed(env: Mapping[str, Any]) -> Any:
        v = f(env)
        if isinstance(v, float):
            return E.rnd(v)
        return None if isinstance(v, list) else v

    return computed


def _kind(t: E.Type) -> str:
    if t == E.BOOL:
        return "bool"
    if t == E.NUMBER:
        return "number"
    return "enum" if t.kind == "string" and t.values else "string"


def stage_encoder(slots: list[Slot]) -> _Encoder:
    """env -> the `"field":value` parts of one stage fact, absent values left out.

    Each slot's value goes through the engine seam's encoder for its static type
    (`_durable.encoder_for`). The texts of booleans and enum values are that encoder's,
    written once here with their field; an integer in range writes as itself (what the
    number encoder gives it); everything else calls the encoder.
    """
    bools: list[tuple[str, str, str]] = []  # (name, text when true, text when false)
    enums: list[tuple[str, dict[Any, str], str, Callable[[Any], str]]] = []
    numbers: list[tuple[str, str, Callable[[Any], str]]] = []
    others: list[tuple[Callable[[Mapping[str, Any]], Any], str, Callable[[Any], str]]] = []
    for s in slots:
        kind = _kind(s.type)
        values = s.type.values if kind == "enum" else None
        enc = encoder_for(kind, values)
        prefix = f'"{s.field}":'
        if s.name is None:
            others.append((slot_value(s), prefix, enc))
        elif kind == "bool":
            bools.append((s.name, prefix + enc(True), prefix + enc(False)))
        elif kind == "enum" and values:
            enums.append((s.name, {v: prefix + enc(v) for v in values}, prefix, enc))
        elif kind == "number":
            numbers.append((s.name, prefix, enc))
        else:
            others.append((slot_value(s), prefix, enc))
    b, en, nu, ot = tuple(bools), tuple(enums), tuple(numbers), tuple(others)
    lo, hi = -MAX_MAGNITUDE, MAX_MAGNITUDE

    def encode(env: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        add = parts.append
        get = env.get
        for key, yes, no in b:
            v = get(key)
            if v is not None:
                add(yes if v else no)
        for key, table, prefix, enc in en:
            v = get(key)
            if v is not None:
                text = table.get(v)
                add(text if text is not None else prefix + enc(v))
        for key, prefix, enc in nu:
            v = get(key)
            if v is not None:
                add(prefix + (str(v) if type(v) is int and lo <= v <= hi else enc(v)))
        for value, prefix, enc in ot:
            v = value(env)
            if v is not None:
                add(prefix + enc(v))
        return parts

    return encode


def criterion_result(outcome: str, partly: bool, full: Any, half: Any) -> tuple[str, Any]:
    """A criterion's (met / partly_met / not_met / not_evaluable, points) from its rule's
    outcome and whether only its partly_when held."""
    if outcome == "fired":
        return ("partly_met", half) if partly else ("met", full)
    return ("not_met" if outcome == "not_fired" else "not_evaluable", 0)


def points(r: Rule) -> tuple[Any, Any]:
    """A criterion's points when met and when partly met (half, at comparison precision)."""
    return num(r.weight), num(E.rnd(r.weight / 2))


def num(v: Any) -> Any:
    """A whole float as an int (points and scores print as 70, not 70.0)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class Screen:
    """What deciding one account again with some facts changed would give for the
    decision's own outputs (qualification, score, criteria, segments, stage), by the
    compiled conditions alone: no engine, no guardrail, no missing facts.

    For the what-if searches of the advice, which try many candidate changes of one
    account: a candidate costs the closures of the rules that read what it changes (and of
    those that read an outcome variable); every other rule keeps the account's outcome.
    The closures are the ones every `Plan.decide` checks the engine against, so a screen
    gives what the engine would; whatever the advice reports is decided again by
    durable_rules (`Plan.confirm`).
    """

    __slots__ = ("plan", "base", "env", "partly", "steps")

    def __init__(self, plan: Plan, base: Decision):
        self.plan, self.base = plan, base
        # a candidate's env starts as the account's own: facts, derived values and outcome
        # variables. A rule reads only outcome variables made at earlier levels, and each
        # is made again at its level when one of its rules moved, so the account's values
        # stand exactly where nothing that makes them moved.
        self.env = dict(base.env)
        self.partly = {rid: c[0] == "partly_met" for rid, c in base.criteria.items()}
        self.steps = plan.prog.steps

    def __call__(self, changes: Mapping[str, Any]) -> Decision:
        plan, base = self.plan, self.base
        key: Any = next(iter(changes)) if len(changes) == 1 else frozenset(changes)
        held = plan._screen_plans.get(key)
        redo, rules_at = held if held is not None else plan.screen_plan(key)
        facts = dict(base.facts)
        facts.update(changes)
        env = self.env.copy()
        env.update(changes)
        for k, v in changes.items():
            if v is None:
                del facts[k], env[k]
        derived = plan.derived
        for i in redo:  # in their order: a derived fact may read an earlier one
            name, fn = derived[i]
            env.pop(name, None)
            v = fn(env)
            if v is not None:
                env[name] = E.rnd(v)
        was = base.outcomes
        outcomes = was
        partly = self.partly
        moved: dict[str, bool] = {}  # rule id -> its partly_when, for the rules that moved
        criteria: dict[str, tuple[str, Any]] = base.criteria
        step_index: int | None = None
        steps = self.steps
        for rules, (level, _by_fact, _always, is_step_level, vars_) in zip(
            rules_at, plan.screen_levels, strict=True
        ):
            for rid, cond_fn, partly_fn in rules:  # only these can move
                k = cond_fn(env)
                kp = False
                if k is True:
                    outcome = "fired"
                else:
                    outcome = "not_fired" if k is False else "not_evaluable"
                    if partly_fn is not None:
                        p = partly_fn(env)
                        kp = p is True
                        if kp:
                            outcome = "fired"
                        elif p is None:
                            outcome = "not_evaluable"
                if outcome != was[rid] or kp != partly.get(rid, False):
                    if outcomes is was:
                        outcomes = dict(was)
                    outcomes[rid] = outcome
                    moved[rid] = kp
            if is_step_level and step_index is None:  # as `decide`: steps, then variables
                step_index = plan._step_by_conditions(env, level)
            if moved and vars_ is not None:  # a rule moved here or before: the variables
                criteria = self._vars(env, outcomes, moved, criteria, vars_)
        if steps and step_index is None:
            step_index = len(steps) - 1
            env["qualification"] = steps[step_index].qualification
        return Decision(
            plan.ruleset,
            facts,
            env,
            outcomes,  # the account's own when nothing moved (a Decision is not changed)
            criteria,
            {},
            {},
            step_index,
            [],
            {},
            {},
        )

    def _vars(
        self,
        env: dict[str, Any],
        outcomes: Mapping[str, str],
        moved: Mapping[str, bool],
        criteria: dict[str, tuple[str, Any]],
        flags: tuple[bool, bool, bool],
    ) -> dict[str, tuple[str, Any]]:
        """The outcome variables made at this level, made again where one of their rules
        moved (the account's own stand otherwise); the criteria, with the moved ones'."""
        plan, base = self.plan, self.base
        score_now, segments_now, stage_now = flags
        if score_now and "score" in base.env:
            points = plan.criterion_points
            moved_criteria = [rid for rid in moved if rid in points]
            if moved_criteria:
                criteria = dict(base.criteria)
                required = False
                for rid in moved_criteria:
                    req, full, half = points[rid]
                    criteria[rid] = criterion_result(outcomes[rid], moved[rid], full, half)
                    required = required or req
                score = 0.0
                for rid in plan.criterion_ids:  # summed in rule order, as `decide` does
                    score += criteria[rid][1]
                env["score"] = num(E.rnd(score))
                if required:  # the counts of required criteria not met, not evaluable
                    not_met: list[str] = []
                    not_eval: list[str] = []
                    for rid in plan.required_ids:
                        c = criteria[rid][0]
                        if c == "not_met":
                            not_met.append(rid)
                        elif c == "not_evaluable":
                            not_eval.append(rid)
                    env["required_not_met"] = len(not_met)
                    env["required_not_evaluable"] = len(not_eval)
                    env["required_not_met_rules"] = not_met
                    env["required_not_evaluable_rules"] = not_eval
        again_segments = segments_now and not plan.segment_ids.isdisjoint(moved)
        again_stage = stage_now and not plan.stage_ids.isdisjoint(moved)
        if again_stage:
            env.pop("stage", None)  # no stage rule holding: no stage
        if again_segments or again_stage:
            plan._outcome_vars(env, outcomes, {}, {}, (False, again_segments, again_stage))
        return criteria
