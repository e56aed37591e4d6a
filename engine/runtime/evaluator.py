"""The evaluation core: one program run, with the engine deciding and the explanation checking.

A :class:`Plan` is built once per compiled program. It flattens what an evaluation walks
(stage slots by encoding, rules per stage, outcome variables per stage) into tuples, so the
per-account work is a few tight loops instead of a call per slot and per rule. The meaning
is the one described in ``docs/engine-api.md``: durable_rules decides which rules fire;
the Kleene closures must agree (any disagreement raises EngineError) and tell `not_fired`
from `not_evaluable`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, EvaluationError
from engine.lang import expr as E
from engine.lang.compile import Program, Rule, Slot
from engine.lang.model import SEVERITY_RANK
from engine.runtime._durable import MAX_MAGNITUDE, EngineRuleset

_Encoder = Callable[[Mapping[str, Any]], list[str]]


@dataclass
class Run:
    """What one program evaluation produced (engine-decided, explanation-checked)."""

    env: dict[str, Any]
    outcomes: dict[str, str]  # rule id -> fired / not_fired / not_evaluable
    partly: dict[str, bool]
    severity: dict[str, str]
    step: int | None
    undecided: dict[str, list[int]]  # rule id -> escalations left unknown (fired rules)
    criteria: dict[str, tuple[str, Any]]  # criterion id -> (met / partly_met / ..., points)


def plan_for(prog: Program) -> Plan:
    """The program's plan, built on first use and kept on the program."""
    plan = prog.plan
    if plan is None:
        plan = prog.plan = Plan(prog)
    return plan


class Plan:
    """Per-stage work of one program, precomputed."""

    def __init__(self, prog: Program):
        self.prog = prog
        self.derived = tuple((d.name, d.fn) for d in prog.derived)
        self.vars0 = self._vars_at(0)
        self.levels = tuple(
            (
                level,
                _encoder(prog.level_fields.get(level, [])),
                tuple(_rule_plan(r) for r in prog.rules_by_level.get(level, ())),
                level in prog.step_levels,
                self._vars_at(level),
            )
            for level in prog.levels
        )
        self.criteria = tuple(
            (r.id, bool(r.decl.required), *points(r))
            for r in prog.rules_of_kind.get("criterion", ())
        )
        self.segment_rules = tuple(
            (r.id, r.decl.segment) for r in prog.rules_of_kind.get("segment", ())
        )
        self.stage_rules = tuple((r.id, r.decl.stage) for r in prog.rules_of_kind.get("stage", ()))

    def _vars_at(self, level: int) -> tuple[bool, bool, bool] | None:
        vl = self.prog.var_level
        flags = (vl.get("score") == level, vl.get("segments") == level, vl.get("stage") == level)
        return flags if any(flags) else None

    def run(self, engine: EngineRuleset, facts: Mapping[str, Any]) -> Run:
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
        fired_all: set[str] = set()
        step_index: int | None = None
        if self.vars0 is not None:
            self._outcome_vars(env, outcomes, partly, criteria, self.vars0)
        with engine.session() as session:
            for level, encode, rules, is_step_level, vars_ in self.levels:
                fired = set(session.assert_level(level, encode(env)))
                fired_all |= fired
                for rid, pos_name, cond_fn, ppart, escs in rules:
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
                    if escs and outcome == "fired":
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
                if is_step_level and step_index is None:
                    step_index = self._step(env, fired_all, level)
                if vars_ is not None:
                    self._outcome_vars(env, outcomes, partly, criteria, vars_)
        if prog.steps and step_index is None:
            step_index = len(prog.steps) - 1
            env["qualification"] = prog.steps[step_index].qualification
        return Run(env, outcomes, partly, severity, step_index, undecided, criteria)

    def _step(self, env: dict[str, Any], fired_all: set[str], level: int) -> int | None:
        """The first decision step the engine fired (or the unconditional one), checked."""
        steps = self.prog.steps
        chosen: int | None = None
        for s in steps:
            if s.level > level:
                break
            if s.node is None or s.engine in fired_all:
                chosen = s.index
                break
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
                if out == "fired":
                    result = ("partly_met", half) if partly.get(rid, False) else ("met", full)
                    score += result[1]
                else:
                    result = ("not_met" if out == "not_fired" else "not_evaluable", 0)
                    if required:
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
    return (r.id, r.engine["pos"], r.cond_fn, ppart, escs)


def _encoder(slots: list[Slot]) -> _Encoder:
    """env -> the `"field":value` parts of one stage fact, absent values left out.

    Plain names take a fast path by static type; anything unusual (a float, a big number,
    a value outside an enum) goes through the slot's own encoder, which applies every rule
    of ``_durable.encode_value``.
    """
    bools: list[tuple[str, str, str]] = []
    enums: list[tuple[str, dict[Any, str], Any]] = []
    numbers: list[tuple[str, str, Any]] = []
    others: list[Any] = []
    for s in slots:
        prefix = f'"{s.field}":'
        if s.name is None:
            others.append(s.part)
        elif s.type == E.BOOL:
            bools.append((s.name, prefix + "1", prefix + "0"))
        elif s.type == E.NUMBER:
            numbers.append((s.name, prefix, s.part))
        elif s.type.kind == "string" and s.type.values:
            table = {v: s.part({s.name: v}) for v in s.type.values}
            enums.append((s.name, table, s.part))
        else:
            others.append(s.part)
    b, en, nu, ot = tuple(bools), tuple(enums), tuple(numbers), tuple(others)
    floats: dict[float, str] = {}  # a float -> its engine text (-0.0 and 0.0 both write 0)
    lo, hi, digits = -MAX_MAGNITUDE, MAX_MAGNITUDE, E.ROUND_DIGITS

    def encode(env: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        add = parts.append
        get = env.get
        for key, yes, no in b:
            v = get(key)
            if v is not None:
                add(yes if v else no)
        for key, table, slow in en:
            v = get(key)
            if v is not None:
                add(table.get(v) or slow(env))
        for key, prefix, slow in nu:
            v = get(key)
            if v is None:
                continue
            t = type(v)
            if t is int and lo <= v <= hi:
                add(prefix + str(v))
            elif t is float and lo <= v <= hi:  # finite and in range: E.rnd, then its text
                text = floats.get(v)  # percentages and shares recur across accounts
                if text is None:
                    r = round(v, digits)
                    text = str(int(r)) if r.is_integer() else repr(r)
                    if "e" in text:
                        add(slow(env))
                        continue
                    if len(floats) >= 4096:
                        floats.clear()
                    floats[v] = text
                add(prefix + text)
            else:
                add(slow(env))
        for slow in ot:
            p = slow(env)
            if p is not None:
                add(p)
        return parts

    return encode


def points(r: Rule) -> tuple[Any, Any]:
    """A criterion's points when met and when partly met (half, at comparison precision)."""
    return num(r.weight), num(E.rnd(r.weight / 2))


def num(v: Any) -> Any:
    """A whole float as an int (points and scores print as 70, not 70.0)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v
