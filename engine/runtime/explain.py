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

from engine.lang.model import SEVERITY_RANK, AdviceDecl
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
    own_message: bool  # the rule has a message of its own when fired (not the default)
    recommend: TextFn | None
    playbook: tuple[tuple[TextFn, Callable[[Mapping[str, Any]], Any] | None], ...]
    # per part: (id, scope, message, recommendation); said when the part holds
    parts: tuple[tuple[str, str, TextFn | None, TextFn | None], ...]
    # severity -> (message, recommendation) of the highest escalation level to it with texts
    levels: dict[str, tuple[TextFn | None, TextFn | None]]


def join(texts: list[dict[str, str]]) -> dict[str, str]:
    """Texts said one after the other: English sentences with a space, Chinese without."""
    return {"en": " ".join(t["en"] for t in texts), "zh": "".join(t["zh"] for t in texts)}


class Explainer:
    """Builds the verdicts of one program (the account's) from its decisions."""

    def __init__(self, prog: Program, texts: Texts, advice: AdviceDecl | None = None):
        self.prog = prog
        self.texts = texts
        self.rules = tuple(self._rule_text(r) for r in prog.rules)
        self.read_derived = reader(tuple(d.name for d in prog.derived))
        self.playbook_for = frozenset(advice.playbook_for) if advice else None
        self.qualification_advice = {
            q: texts.fn(t.model_dump(), prog)
            for q, t in (advice.recommendations if advice else {}).items()
        }

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
            own_message="fired" in r.messages or "met" in r.messages,
            recommend=texts.fn(r.recommendation, prog) if r.recommendation else None,
            playbook=tuple((texts.fn(item.text, prog), item.done_fn) for item in r.playbook),
            parts=tuple(
                (
                    p.id,
                    p.scope,
                    texts.fn(p.message, prog) if p.message else None,
                    texts.fn(p.recommendation, prog) if p.recommendation else None,
                )
                for p in r.parts
            ),
            levels={
                sev: (
                    texts.fn(msg, prog) if msg else None,
                    texts.fn(rec, prog) if rec else None,
                )
                for (sev, _node), (msg, rec) in zip(r.escalations, r.esc_texts, strict=True)
                if msg or rec
            },
        )

    def findings(self, d: Decision) -> list[dict[str, Any]]:
        """The fired guardrails of a decision as findings, in rule order (the portfolio
        program's findings: the same texts, parts and escalation texts as an account's)."""
        get = d.env.get
        return [
            self._finding(rt, d, rt.read(get))
            for rt in self.rules
            if rt.kind == "guardrail" and d.outcomes.get(rt.rid) == "fired"
        ]

    def _finding(self, rt: _RuleText, d: Decision, read: dict[str, Any]) -> dict[str, Any]:
        """A fired guardrail as a finding: its severity and scope, and texts that name only
        the parts of its condition that hold for this account."""
        env = d.env
        sev = d.severities[rt.rid]
        say, recommend = rt.say["fired"], rt.recommend
        level = rt.levels.get(sev)
        own = rt.own_message
        if level is not None:
            own = own or level[0] is not None
            say = level[0] or say
            recommend = level[1] or recommend
        message = say(env)
        recommendation = recommend(env) if recommend else None
        parts: list[dict[str, Any]] = []
        if rt.parts:
            held = d.parts.get(rt.rid, ())
            for (pid, scope, p_say, p_rec), value in zip(rt.parts, held, strict=True):
                if value is True:
                    parts.append(
                        {
                            "part": pid,
                            "scope": scope,
                            "message": p_say(env) if p_say else None,
                            "recommendation": p_rec(env) if p_rec else None,
                        }
                    )
            said = [p["message"] for p in parts if p["message"]]
            if said:
                message = join([message, *said]) if own else join(said)
            advised = [p["recommendation"] for p in parts if p["recommendation"]]
            if advised:
                recommendation = join([recommendation, *advised] if recommendation else advised)
        finding: dict[str, Any] = {
            "rule": rt.rid,
            "severity": sev,
            "scope": d.scopes.get(rt.rid, "account"),
            "message": message,
            "recommendation": recommendation,
            "facts": read,
        }
        if parts:
            finding["parts"] = parts
        return finding

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
                if texts:
                    guardrails.append(self._finding(rt, d, read))
                else:
                    guardrails.append(
                        {
                            "rule": rid,
                            "severity": sev,
                            "scope": d.scopes.get(rid, "account"),
                            "message": None,
                            "recommendation": None,
                            "facts": read,
                        }
                    )
            else:
                if rt.stage is not None and outcome == "fired" and stage == rt.stage:
                    recommendations = [
                        {"rule": rid, "message": item(env) if texts else None}
                        for item, done in rt.playbook
                        if done is None or done(env) is not True  # leave out what is done
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
        qualification = get("qualification")
        if self.playbook_for is not None and qualification not in self.playbook_for:
            recommendations = []  # the stage playbook is for the accounts worth it
        advice = self.qualification_advice.get(str(qualification))
        if advice is not None:
            recommendations = [
                {"rule": f"advice.{qualification}", "message": advice(env) if texts else None}
            ]
        step = prog.steps[d.step] if d.step is not None else None
        summary = (
            self.texts.render(step.reason, env, prog) if texts and step and step.reason else None
        )
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
