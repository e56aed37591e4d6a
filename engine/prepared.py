"""A prepared ruleset: compiled once, evaluated many times into plain, JSON-ready verdicts."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import expr as E
from . import facts as F
from ._durable import EngineRuleset
from .compile import Compiled, Program, Rule, compile_source
from .errors import Diagnostic, EngineError, EvaluationError, FactsError, RulesetError
from .model import SEVERITY_RANK
from .render import placeholders, render


@dataclass
class _Run:
    """What one program evaluation produced (engine-decided, explanation-checked)."""

    env: dict[str, Any]
    outcomes: dict[str, str]  # rule id -> fired / not_fired / not_evaluable
    partly: dict[str, bool]
    severity: dict[str, str]
    step: int | None
    undecided: dict[str, list[int]]  # rule id -> escalations left unknown (fired rules)


class PreparedRuleset:
    """A validated, compiled ruleset bound to its own durable_rules ruleset."""

    def __init__(self, compiled: Compiled, path: Path | None = None):
        self._c = compiled
        doc = compiled.doc
        self.name: str = doc.name
        self.version: str = doc.version
        self.digest: str = compiled.digest
        self.path = path
        self.source: str = compiled.source.text
        self.warnings = compiled.warnings  # lint findings that do not block loading
        self.loaded_at = _dt.datetime.now(_dt.UTC)
        self.currency = doc.currency
        self.facts_model = F.build_model(doc.name, doc.facts)
        self.rules = compiled.program.rules
        self._prog = compiled.program
        self._engine = _engine_for(self.name, self._prog)
        self._port = compiled.portfolio
        try:
            self._port_engine = (
                _engine_for(self.name + "-portfolio", self._port) if self._port else None
            )
        except EngineError:
            self._engine.close()
            raise
        self._port_model = (
            F.build_model(doc.name + "_portfolio", self._port.facts) if self._port else None
        )
        self.portfolio_params: dict[str, Any] = dict(self._port.params) if self._port else {}
        self._ruleset_ref = {"name": self.name, "version": self.version, "digest": self.digest}
        self._names: dict[int, tuple[str, ...]] = {}
        self._rendered: dict[tuple[Any, ...], tuple[str, str]] = {}

    # -- public surface
    def validate_facts(self, raw: Any) -> dict[str, Any]:
        """Validated facts (nulls dropped, lists de-duplicated); raises FactsError."""
        return F.validate(self.facts_model, raw)

    def evaluate(self, raw: Any, *, texts: bool = True) -> dict[str, Any]:
        """Validate and evaluate one account; the verdict as plain data.

        ``texts=False`` skips what only people read (messages, recommendations, summary,
        trace comparisons): the same decisions, for bulk analysis such as `kaq diff`.
        """
        return self.evaluate_valid(self.validate_facts(raw), texts=texts)

    def evaluate_many(self, raws: Iterable[Any]) -> Iterator[dict[str, Any] | FactsError]:
        """Per item: a verdict, or the FactsError of an invalid item (the others go on)."""
        for raw in raws:
            try:
                yield self.evaluate(raw)
            except FactsError as exc:
                yield exc

    def evaluate_valid(self, facts: Mapping[str, Any], *, texts: bool = True) -> dict[str, Any]:
        """Evaluate facts already returned by validate_facts."""
        prog = self._prog
        run = _run(prog, self._engine, facts)
        return self._verdict(facts, run, texts)

    def facts_schema(self) -> dict[str, Any]:
        """JSON Schema of the facts."""
        return self.facts_model.model_json_schema()

    def describe(self) -> dict[str, Any]:
        """The ruleset as JSON."""
        doc = self._c.doc
        data = doc.model_dump(mode="json", exclude_none=True)
        data["digest"] = self.digest
        data["loaded_at"] = self.loaded_at.isoformat()
        data["rule_count"] = len(self.rules)
        data["facts_schema"] = self.facts_schema()
        return data

    def evaluate_portfolio_metrics(self, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Findings of the portfolio rules over computed portfolio metrics."""
        if self._port is None or self._port_engine is None or self._port_model is None:
            return []
        facts = F.validate(self._port_model, dict(metrics))
        run = _run(self._port, self._port_engine, facts)
        env = run.env
        values = {**self._port.params, **env}
        findings: list[dict[str, Any]] = []
        for r in self._port.rules:
            if run.outcomes[r.id] != "fired":
                continue
            sev = run.severity.get(r.id) or r.decl.severity or "info"
            findings.append(
                {
                    "rule": r.id,
                    "severity": sev,
                    "message": self._message(r, "fired", values, self._port),
                    "recommendation": self._text(r.recommendation, values, self._port),
                    "facts": {n: env.get(n) for n in r.reads},
                }
            )
        findings.sort(key=lambda f: -SEVERITY_RANK[str(f["severity"])])
        return findings

    def evaluate_portfolio(
        self, accounts: list[Mapping[str, Any]], portfolio: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Policy §7: every account's verdict plus portfolio findings and counts."""
        from .portfolio import evaluate_portfolio

        return evaluate_portfolio(self, accounts, portfolio)

    def close(self) -> None:
        """Free the engine rulesets (after the last evaluation that uses them)."""
        self._engine.close()
        if self._port_engine is not None:
            self._port_engine.close()

    # -- verdict assembly
    def _verdict(self, facts: Mapping[str, Any], run: _Run, texts: bool = True) -> dict[str, Any]:
        prog = self._prog
        env = run.env
        values = {**prog.params, **env}  # what message templates read
        text = self._text if texts else _no_text
        message = self._message if texts else _no_text
        criteria = []
        guardrails = []
        trace = []
        missing: set[str] = set()
        recommendations: list[dict[str, Any]] = []
        for r in prog.rules:
            outcome = run.outcomes[r.id]
            read = {n: env.get(n) for n in r.reads}  # env holds the facts exactly as given
            entry: dict[str, Any] = {"rule": r.id, "kind": r.kind, "outcome": outcome}
            if outcome == "not_evaluable":
                missing.update(n for n in r.input_deps if n not in facts)
            elif outcome == "fired":
                # an escalation left unknown did not raise the severity: say what would decide it
                for j in run.undecided.get(r.id, ()):
                    missing.update(n for n in r.esc_input_deps[j] if n not in facts)
            if r.kind == "criterion":
                c_out = _criterion_outcome(outcome, run.partly.get(r.id, False))
                points = _points(r, c_out)
                entry["points"] = points
                criteria.append(
                    {
                        "rule": r.id,
                        "outcome": c_out,
                        "points": points,
                        "max_points": _num(r.weight),
                        "required": r.decl.required,
                        "message": message(r, c_out, values, prog),
                        "facts": read,
                    }
                )
            elif r.kind == "guardrail" and outcome == "fired":
                sev = run.severity.get(r.id) or r.decl.severity or "warning"
                entry["severity"] = sev
                guardrails.append(
                    {
                        "rule": r.id,
                        "severity": sev,
                        "message": message(r, "fired", values, prog),
                        "recommendation": text(r.recommendation, values, prog),
                        "facts": read,
                    }
                )
            elif r.kind == "stage" and outcome == "fired" and env.get("stage") == r.decl.stage:
                recommendations = [
                    {"rule": r.id, "message": text(item, values, prog)} for item in r.playbook
                ]
            entry["facts"] = read
            entry["comparisons"] = [f(env) for f in r.comparison_fns] if texts else []
            trace.append(entry)
        guardrails.sort(
            key=lambda g: -SEVERITY_RANK[str(g["severity"])]
        )  # stable: ruleset order kept
        step = prog.steps[run.step] if run.step is not None else None
        summary = text(step.reason, values, prog) if step and step.reason else None
        return {
            "account_id": facts.get("account_id"),
            "ruleset": dict(self._ruleset_ref),
            "qualification": env.get("qualification"),
            "score": _num(env.get("score", 0)),
            "segments": list(env.get("segments", [])),
            "stage": env.get("stage"),
            "summary": summary,
            "decision": {
                "step": (step.index + 1) if step else None,
                "qualification": env.get("qualification"),
            },
            "criteria": criteria,
            "guardrails": guardrails,
            "recommendations": recommendations,
            "missing_facts": sorted(missing),
            "derived": {d.name: env.get(d.name) for d in prog.derived},
            "trace": trace,
        }

    def _message(
        self, r: Rule, outcome: str, env: Mapping[str, Any], prog: Program
    ) -> dict[str, str]:
        text = r.messages.get(outcome)
        if text is None:
            return _default_message(r, outcome, env)
        return self._text(text, env, prog) or {}

    def _text(
        self, text: Mapping[str, str] | None, env: Mapping[str, Any], prog: Program
    ) -> dict[str, str] | None:
        if text is None:
            return None
        # Rendering is a pure function of the template and the values it names; accounts
        # share most of those values (enums, booleans, params), so it is memoised.
        names = self._names.get(id(text))
        if names is None:
            names = tuple(
                dict.fromkeys(n for lang in ("en", "zh") for n, _s in placeholders(text[lang]))
            )
            self._names[id(text)] = names
        key = (id(text), *(_hashable(env.get(n)) for n in names))
        hit = self._rendered.get(key)
        if hit is None:
            hit = (
                render(
                    text["en"],
                    env,
                    prog.units,
                    "en",
                    self.currency,
                    self._c.labels,
                    self._c.missing,
                ),
                render(
                    text["zh"],
                    env,
                    prog.units,
                    "zh",
                    self.currency,
                    self._c.labels,
                    self._c.missing,
                ),
            )
            if len(self._rendered) >= _MEMO_SIZE:
                self._rendered.clear()
            self._rendered[key] = hit
        return {"en": hit[0], "zh": hit[1]}


_MEMO_SIZE = 20_000


def _no_text(*_args: Any) -> None:
    """Stands in for message and text rendering when a verdict is built without texts."""
    return None


def _hashable(v: Any) -> Any:
    # lists are the only unhashable fact values; 1 and 1.0 and True hash alike, so the
    # type is part of the key (a message prints `1` and `1.0` and `yes` differently)
    if isinstance(v, list):
        return tuple(v)
    return (type(v), v)


def load_ruleset(path: Path | str) -> PreparedRuleset:
    """Load, validate and compile one ruleset file."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    return prepare(str(p), text, p)


def prepare(file: str, text: str, path: Path | None = None) -> PreparedRuleset:
    """Compile ruleset source text (named `file` in diagnostics)."""
    compiled = compile_source(file, text)
    try:
        return PreparedRuleset(compiled, path)
    except EngineError as exc:  # the compiler checks the engine's limits; this is the backstop
        raise RulesetError([Diagnostic(file, 1, 1, "ruleset.engine", str(exc))]) from None


# --------------------------------------------------------------------------- evaluation core


def _engine_for(label: str, prog: Program) -> EngineRuleset:
    rules = {name: (er.level, er.cond) for name, er in prog.engine_rules.items()}
    safe = "".join(ch if ch.isalnum() else "_" for ch in label)[:40]
    return EngineRuleset(safe, rules, prog.atom_count)


def _run(prog: Program, engine: EngineRuleset, facts: Mapping[str, Any]) -> _Run:
    env: dict[str, Any] = dict(facts)
    for d in prog.derived:
        v = d.fn(env)
        if v is not None:
            env[d.name] = E.rnd(v)
    outcomes: dict[str, str] = {}
    partly: dict[str, bool] = {}
    severity: dict[str, str] = {}
    undecided: dict[str, list[int]] = {}
    fired_all: set[str] = set()
    step_index: int | None = None
    _set_outcome_vars(prog, env, outcomes, partly, 0)
    with engine.session() as session:
        for level in prog.levels:
            parts = []
            for slot in prog.level_fields.get(level, ()):
                p = slot.part(env)
                if p is not None:
                    parts.append(p)
            fired = set(session.assert_encoded(level, parts))
            fired_all |= fired
            for r in prog.rules_by_level.get(level, ()):
                _decide(r, fired, env, outcomes, partly, severity, undecided)
            if step_index is None and level in prog.step_levels:
                for s in prog.steps:
                    if s.level > level:
                        break
                    if s.node is None or s.engine in fired_all:
                        step_index = s.index
                        break
                _check_steps(prog, env, step_index, level)
                if step_index is not None:
                    env["qualification"] = prog.steps[step_index].qualification
            _set_outcome_vars(prog, env, outcomes, partly, level)
    if prog.steps and step_index is None:
        step_index = len(prog.steps) - 1
        env["qualification"] = prog.steps[step_index].qualification
    return _Run(env, outcomes, partly, severity, step_index, undecided)


def _decide(
    r: Rule,
    fired: set[str],
    env: Mapping[str, Any],
    outcomes: dict[str, str],
    partly: dict[str, bool],
    severity: dict[str, str],
    undecided: dict[str, list[int]],
) -> None:
    """The rule's outcome as the engine decided it, checked against the Kleene explanation."""
    # durable_rules decides what fired; the Kleene explanation must agree, and tells
    # not_fired (false) from not_evaluable (unknown) for the rules that did not fire.
    pos = r.engine["pos"] in fired
    kleene = r.cond_fn(env)
    if pos != (kleene is True):
        raise EngineError(f"{r.id}: the engine fired={pos}, the explanation says {kleene}")
    outcome = "fired" if pos else "not_fired" if kleene is False else "not_evaluable"
    if r.partly is not None and not pos:
        ppos = r.engine["ppos"] in fired
        kp = r.partly_fn(env)
        if ppos != (kp is True):
            raise EngineError(f"{r.id}: the engine fired={ppos} for partly_when, explanation {kp}")
        partly[r.id] = ppos
        if ppos:
            outcome = "fired"
        elif kp is None:
            outcome = "not_evaluable"
    outcomes[r.id] = outcome
    if outcome == "fired" and r.escalations:
        best = None
        for j, (sev, _node) in enumerate(r.escalations):
            hit = r.engine[f"esc{j}"] in fired
            value = r.esc_fns[j](env)
            if hit != (value is True):
                raise EngineError(f"{r.id}: engine and explanation disagree on escalation {j + 1}")
            if value is None:
                undecided.setdefault(r.id, []).append(j)
            if hit and (best is None or SEVERITY_RANK[sev] > SEVERITY_RANK[best]):
                best = sev
        if best is not None:
            severity[r.id] = best


def _check_steps(prog: Program, env: Mapping[str, Any], step_index: int | None, level: int) -> None:
    for s in prog.steps:
        if s.level > level:
            return
        k = True if s.fn is None else s.fn(env)
        if k is True:
            if step_index != s.index:
                raise EngineError(
                    f"decision: engine chose step {step_index}, explanation step {s.index}"
                )
            return


def _set_outcome_vars(
    prog: Program,
    env: dict[str, Any],
    outcomes: Mapping[str, str],
    partly: Mapping[str, bool],
    level: int,
) -> None:
    """Outcome variables become known after the level of their last producer."""
    vl = prog.var_level
    if vl.get("score") == level:
        score = 0.0
        not_met: list[str] = []
        not_eval: list[str] = []
        for r in prog.rules_of_kind.get("criterion", ()):
            c = _criterion_outcome(outcomes.get(r.id, "not_evaluable"), partly.get(r.id, False))
            score += _points(r, c)
            if r.decl.required:
                if c == "not_met":
                    not_met.append(r.id)
                elif c == "not_evaluable":
                    not_eval.append(r.id)
        env["score"] = _num(E.rnd(score))
        env["required_not_met"] = len(not_met)
        env["required_not_evaluable"] = len(not_eval)
        env["required_not_met_rules"] = not_met
        env["required_not_evaluable_rules"] = not_eval
    if vl.get("segments") == level:
        segs = [
            r.decl.segment
            for r in prog.rules_of_kind.get("segment", ())
            if outcomes.get(r.id) == "fired"
        ]
        env["segments"] = list(dict.fromkeys(segs))
    if vl.get("stage") == level:
        fired = [r for r in prog.rules_of_kind.get("stage", ()) if outcomes.get(r.id) == "fired"]
        if len(fired) > 1:
            raise EvaluationError(
                "stage rules " + " and ".join(f"`{r.id}`" for r in fired) + " all fired: "
                "an account is in one stage, so stage conditions must exclude each other"
            )
        if fired:
            env["stage"] = fired[0].decl.stage


def _criterion_outcome(outcome: str, partly: bool) -> str:
    if outcome == "fired":
        return "partly_met" if partly else "met"
    return "not_met" if outcome == "not_fired" else "not_evaluable"


def _points(r: Rule, c_out: str) -> float | int:
    if c_out == "met":
        return _num(r.weight)
    if c_out == "partly_met":
        return _num(E.rnd(r.weight / 2))
    return 0


def _num(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _default_message(r: Rule, outcome: str, env: Mapping[str, Any]) -> dict[str, str]:
    words = {
        "met": ("met", "满足"),
        "partly_met": ("partly met", "部分满足"),
        "not_met": ("not met", "不满足"),
        "not_evaluable": ("not evaluable: facts missing", "信息不足，无法判断"),
        "fired": ("applies", "成立"),
    }
    en, zh = words.get(outcome, (outcome, outcome))
    label_en = r.decl.description.en if r.decl.description else r.id
    label_zh = r.decl.description.zh if r.decl.description else r.id
    return {"en": f"{label_en}: {en}.", "zh": f"{label_zh}：{zh}。"}
