"""Explain: a :class:`~engine.runtime.decide.Decision` and its ruleset into the verdict.

The verdict (api.md) adds to the decision what people read: the criteria and findings
with their messages, the playbook, the summary, and the trace of every rule with the
facts it read and its comparisons. Nothing here decides anything: the outcomes, points,
severities and missing facts all come from the Decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.lang.model import SEVERITY_RANK
from engine.lang.program import Program, Rule
from engine.runtime.decide import Decision, num, points
from engine.runtime.texts import TextFn, Texts

Reader = Callable[[Callable[[str], Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _RuleText:
    """What the explanation needs of one rule, flattened once, its texts ready to fill."""

    rid: str
    kind: str
    read: Reader  # get -> {name: value} of the facts (derived ones too) the rule reads
    records: Callable[[Mapping[str, Any]], list[dict[str, Any]]] | None  # comparisons
    required: bool
    max_points: Any
    stage: str | None  # for a stage rule: the stage whose playbook it carries
    say: dict[str, TextFn]  # outcome -> message
    recommend: TextFn | None
    playbook: tuple[TextFn, ...]


class Explainer:
    """Builds the verdicts of one program (the account's) from its decisions."""

    def __init__(self, prog: Program, texts: Texts):
        self.prog = prog
        self.texts = texts
        self.rules = tuple(self._rule_text(r) for r in prog.rules)
        self.read_derived = reader(tuple(d.name for d in prog.derived))

    def _rule_text(self, r: Rule) -> _RuleText:
        prog, texts = self.prog, self.texts
        outcomes = (
            ("met", "partly_met", "not_met", "not_evaluable")
            if r.kind == "criterion"
            else ("fired",)
        )
        return _RuleText(
            rid=r.id,
            kind=r.kind,
            read=reader(tuple(r.reads)),
            records=r.records_fn,
            required=r.decl.required,
            max_points=points(r)[0],
            stage=r.decl.stage if r.kind == "stage" else None,
            say={o: texts.message(r, o, prog) for o in outcomes},
            recommend=texts.fn(r.recommendation, prog) if r.recommendation else None,
            playbook=tuple(texts.fn(item, prog) for item in r.playbook),
        )

    def explain(self, d: Decision, *, texts: bool = True) -> dict[str, Any]:
        """The verdict of a decision; `texts=False` leaves out what only people read."""
        prog = self.prog
        env = d.env
        get = env.get
        outcomes, severities, criteria_out = d.outcomes, d.severities, d.criteria
        stage = get("stage")
        criteria = []
        guardrails = []
        trace = []
        recommendations: list[dict[str, Any]] = []
        for rt in self.rules:
            rid, kind = rt.rid, rt.kind
            outcome = outcomes[rid]
            read = rt.read(get)  # env holds the facts exactly as given
            comparisons = rt.records(env) if texts and rt.records is not None else []
            if kind == "criterion":
                c_out, pts = criteria_out[rid]
                trace.append(
                    {
                        "rule": rid,
                        "kind": kind,
                        "outcome": outcome,
                        "points": pts,
                        "facts": read,
                        "comparisons": comparisons,
                    }
                )
                criteria.append(
                    {
                        "rule": rid,
                        "outcome": c_out,
                        "points": pts,
                        "max_points": rt.max_points,
                        "required": rt.required,
                        "message": rt.say[c_out](env) if texts else None,
                        "facts": read,
                    }
                )
            elif kind == "guardrail" and outcome == "fired":
                sev = severities[rid]
                trace.append(
                    {
                        "rule": rid,
                        "kind": kind,
                        "outcome": outcome,
                        "severity": sev,
                        "facts": read,
                        "comparisons": comparisons,
                    }
                )
                recommend = rt.recommend
                guardrails.append(
                    {
                        "rule": rid,
                        "severity": sev,
                        "message": rt.say["fired"](env) if texts else None,
                        "recommendation": recommend(env) if texts and recommend else None,
                        "facts": read,
                    }
                )
            else:
                if rt.stage is not None and outcome == "fired" and stage == rt.stage:
                    recommendations = [
                        {"rule": rid, "message": item(env) if texts else None}
                        for item in rt.playbook
                    ]
                trace.append(
                    {
                        "rule": rid,
                        "kind": kind,
                        "outcome": outcome,
                        "facts": read,
                        "comparisons": comparisons,
                    }
                )
        guardrails.sort(
            key=lambda g: -SEVERITY_RANK[str(g["severity"])]
        )  # stable: ruleset order kept
        step = prog.steps[d.step] if d.step is not None else None
        summary = (
            self.texts.render(step.reason, env, prog) if texts and step and step.reason else None
        )
        qualification = get("qualification")
        return {
            "account_id": d.facts.get("account_id"),
            "ruleset": d.ruleset.to_dict(),
            "qualification": qualification,
            "score": num(get("score", 0)),
            "segments": list(get("segments", [])),
            "stage": stage,
            "summary": summary,
            "decision": {
                "step": (step.index + 1) if step else None,
                "qualification": qualification,
            },
            "criteria": criteria,
            "guardrails": guardrails,
            "recommendations": recommendations,
            "missing_facts": list(d.missing_facts),
            "derived": self.read_derived(get),
            "trace": trace,
        }


def reader(names: tuple[str, ...]) -> Reader:
    """get -> {name: get(name)} for fixed names; short lists as dict displays (no loop)."""
    if len(names) == 0:
        return lambda get: {}
    if len(names) == 1:
        (a,) = names
        return lambda get: {a: get(a)}
    if len(names) == 2:
        a, b = names
        return lambda get: {a: get(a), b: get(b)}
    if len(names) == 3:
        a, b, c = names
        return lambda get: {a: get(a), b: get(b), c: get(c)}
    if len(names) == 4:
        a, b, c, d = names
        return lambda get: {a: get(a), b: get(b), c: get(c), d: get(d)}
    return lambda get: {n: get(n) for n in names}
