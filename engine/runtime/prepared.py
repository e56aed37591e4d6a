"""A prepared ruleset: compiled once, bound to durable_rules, evaluated many times.

Evaluation is two named steps (`decide`, then `explain`) with a typed value between them:

>>> rs = load_ruleset("rulesets/key-account.yaml")            # doctest: +SKIP
>>> d = rs.decide({"account_id": "A", "product_fit": "none"})  # doctest: +SKIP
>>> d.qualification, d.score                                    # doctest: +SKIP
('not_key_account', 0)
>>> rs.explain(d)["summary"]["en"]                              # doctest: +SKIP

`evaluate(facts)` is `explain(decide(facts))`: the full verdict.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.errors import Diagnostic, EngineError, FactsError, RulesetError
from engine.lang import expr as E
from engine.lang.compile import compile_source
from engine.lang.model import SEVERITY_RANK, FactDecl
from engine.lang.program import Compiled, Program, Rule
from engine.runtime import facts as F
from engine.runtime._durable import EngineRuleset
from engine.runtime.advise import Advisor
from engine.runtime.decide import Decision, Plan, RulesetRef
from engine.runtime.explain import Explainer
from engine.runtime.texts import Texts


class PreparedRuleset:
    """A validated, compiled ruleset bound to its own durable_rules rulesets."""

    def __init__(self, compiled: Compiled, path: Path | None = None):
        doc = compiled.doc
        self.compiled = compiled
        self.name: str = doc.name
        self.version: str = doc.version
        self.digest: str = compiled.digest
        self.path = path
        self.source: str = compiled.source.text
        self.warnings: list[Diagnostic] = compiled.warnings  # lint findings, never blocking
        self.loaded_at = _dt.datetime.now(_dt.UTC)
        self.currency: str = doc.currency
        self.facts_model: type[BaseModel] = F.build_model(doc.name, doc.facts)
        self._fast_check = F.build_fast_check(doc.facts)
        self.ref = RulesetRef(self.name, self.version, self.digest)
        self.program: Program = compiled.program
        self.texts = Texts(compiled)
        self.plan = Plan(self.program, self.ref)
        self.explainer = Explainer(self.program, self.texts, doc.advice)
        port = compiled.portfolio
        self.portfolio_program: Program | None = port
        self.portfolio_params: dict[str, Any] = dict(port.params) if port else {}
        self._port_model = F.build_model(doc.name + "_portfolio", port.facts) if port else None
        self._port_plan = Plan(port, self.ref) if port else None
        self._port_explainer: Explainer | None = None
        self.engine = _engine_for(self.name, self.program)
        made = [self.engine]
        try:
            # the advice's paths are decided again by a ruleset of the deciding rules alone
            self.confirm_engine = _engine_for(
                self.name + "-decide", self.program, self.plan.confirm_rules
            )
            made.append(self.confirm_engine)
            self.portfolio_engine = _engine_for(self.name + "-portfolio", port) if port else None
        except EngineError:
            for e in made:
                e.close()
            raise
        self.advisor = Advisor(compiled, self.plan, self.confirm_engine, self.texts)

    # -- what the ruleset is
    @property
    def rules(self) -> list[Rule]:
        """The compiled rules of the account program, in ruleset order."""
        return self.program.rules

    @property
    def fact_decls(self) -> Mapping[str, FactDecl]:
        """The declared input facts, by name."""
        return self.compiled.doc.facts

    @property
    def labels(self) -> Mapping[str, Mapping[str, Mapping[str, str]]]:
        """What people read for a vocabulary value: labels[kind][value][lang]."""
        return self.compiled.labels

    @property
    def engine_rule_count(self) -> int:
        return len(self.program.engine_rules)

    @property
    def level_count(self) -> int:
        """Evaluation levels (one engine fact each, or more where a level is split)."""
        return len(self.program.levels)

    def names_read(self) -> dict[str, Any]:
        """What each rule, derived fact and decision step reads, as the compiler resolved it.

        `{"rules": {id: [name, ...]}, "derived": {name: [name, ...]}, "decision": [name, ...]}`
        over the account and the portfolio program: facts, derived facts, params and outcome
        variables, each name once, in the order first read. Tools that ask "which rules does
        a change of this param touch" read this rather than parsing the YAML again.
        """
        rules: dict[str, list[str]] = {}
        derived: dict[str, list[str]] = {}
        decision: list[str] = []
        for prog in (self.program, self.portfolio_program):
            if prog is None:
                continue
            for r in prog.rules:
                rules[r.id] = list(dict.fromkeys([*r.reads, *r.params]))
            for d in prog.derived:
                derived[d.name] = list(dict.fromkeys(n.name for n in E.names(d.node)))
            for s in prog.steps:
                if s.node is not None:
                    decision.extend(n.name for n in E.names(s.node))
        return {"rules": rules, "derived": derived, "decision": list(dict.fromkeys(decision))}

    def qualification_order(self) -> list[str]:
        """The qualifications best first: the advice ladder reversed, then the others in the
        order the decision steps name them."""
        ladder = list(self.compiled.doc.advice.ladder) if self.compiled.doc.advice else []
        out = list(reversed(ladder))
        for s in self.program.steps:
            if s.qualification not in out:
                out.append(s.qualification)
        return out

    def facts_schema(self) -> dict[str, Any]:
        """JSON Schema of the facts."""
        return self.facts_model.model_json_schema()

    def describe(self) -> dict[str, Any]:
        """The ruleset as JSON."""
        data = self.compiled.doc.model_dump(mode="json", exclude_none=True)
        data["digest"] = self.digest
        data["loaded_at"] = self.loaded_at.isoformat()
        data["rule_count"] = len(self.rules)
        data["facts_schema"] = self.facts_schema()
        return data

    # -- evaluation
    def validate_facts(self, raw: Any) -> dict[str, Any]:
        """Validated facts (nulls dropped, lists de-duplicated); raises FactsError."""
        return F.validate(self.facts_model, raw, self._fast_check)

    def decide(self, raw: Any) -> Decision:
        """Validate and decide one account: outcomes, score, qualification; no texts."""
        return self.plan.decide(self.engine, self.validate_facts(raw))

    def decide_valid(self, facts: Mapping[str, Any]) -> Decision:
        """Decide facts already returned by validate_facts."""
        return self.plan.decide(self.engine, facts)

    def explain(self, decision: Decision, *, texts: bool = True) -> dict[str, Any]:
        """The full verdict of a decision of this ruleset (plain data, no decision_id).

        ``texts=False`` skips what only people read (messages, recommendations, summary,
        trace comparisons) and the advice, which only people read.
        """
        verdict = self.explainer.explain(decision, texts=texts)
        if not texts:
            return verdict
        advice = self.advisor.advise(decision)
        advice["next_actions"] = self.advisor.next_actions(verdict, advice["what_it_would_take"])
        out: dict[str, Any] = {}
        for key, value in verdict.items():
            out[key] = value
            if key == "recommendations":
                out.update(advice)
        return out

    def evaluate(self, raw: Any, *, texts: bool = True) -> dict[str, Any]:
        """Validate, decide and explain one account: the verdict as plain data."""
        return self.explain(self.decide(raw), texts=texts)

    def view(self, decision: Decision, view: str = "full") -> dict[str, Any]:
        """One of the views of api.md (`full`, `summary`, `decision`) of a decision.

        The decision is the same in every view; a view only leaves things out. The
        `decision` view builds no text at all.
        """
        if view == "decision":
            return decision.to_dict()
        verdict = self.explain(decision)
        if view == "full":
            return verdict
        if view == "summary":
            return summary_of(verdict)
        raise ValueError(f"unknown view `{view}` (use one of {', '.join(VIEWS)})")

    def evaluate_valid(self, facts: Mapping[str, Any], *, texts: bool = True) -> dict[str, Any]:
        """Decide and explain facts already returned by validate_facts."""
        return self.explain(self.plan.decide(self.engine, facts), texts=texts)

    def evaluate_many(self, raws: Iterable[Any]) -> Iterator[dict[str, Any] | FactsError]:
        """Per item: a verdict, or the FactsError of an invalid item (the others go on)."""
        for raw in raws:
            try:
                yield self.evaluate(raw)
            except FactsError as exc:
                yield exc

    # -- the portfolio program (policy §7)
    def evaluate_portfolio_metrics(self, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Findings of the portfolio rules over computed portfolio metrics."""
        port, plan, engine = self.portfolio_program, self._port_plan, self.portfolio_engine
        if port is None or plan is None or engine is None or self._port_model is None:
            return []
        d = plan.decide(engine, F.validate(self._port_model, dict(metrics)))
        if self._port_explainer is None:
            self._port_explainer = Explainer(port, self.texts)
        findings = self._port_explainer.findings(d)
        for f in findings:
            f["scope"] = "company"  # the portfolio is the company's, not an account's
        findings.sort(key=lambda f: -SEVERITY_RANK[str(f["severity"])])
        return findings

    def evaluate_portfolio(
        self, accounts: list[Mapping[str, Any]], portfolio: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Policy §7: every account's verdict plus portfolio findings and counts."""
        from engine.runtime.portfolio import evaluate_portfolio

        return evaluate_portfolio(self, accounts, portfolio)

    def close(self) -> None:
        """Free the engine rulesets (after the last evaluation that uses them)."""
        self.engine.close()
        self.confirm_engine.close()
        if self.portfolio_engine is not None:
            self.portfolio_engine.close()


VIEWS = ("full", "summary", "decision")


def summary_of(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """The `summary` view of a full verdict: no trace, no comparisons, no criteria facts."""
    out = {k: v for k, v in verdict.items() if k != "trace"}
    out["criteria"] = [{k: v for k, v in c.items() if k != "facts"} for c in verdict["criteria"]]
    return out


def load_ruleset(path: Path | str) -> PreparedRuleset:
    """Load, validate and compile one ruleset file."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    return prepare(str(p), text, p)


def prepare(file: str, text: str, path: Path | None = None) -> PreparedRuleset:
    """Compile ruleset source text (named `file` in diagnostics)."""
    return bind(compile_source(file, text), path)


def bind(compiled: Compiled, path: Path | None = None) -> PreparedRuleset:
    """A compiled ruleset bound to its durable_rules rulesets (on the evaluating thread)."""
    try:
        return PreparedRuleset(compiled, path)
    except EngineError as exc:  # the compiler checks the engine's limits; this is the backstop
        raise RulesetError(
            [Diagnostic(compiled.source.file, 1, 1, "ruleset.engine", str(exc))]
        ) from None


def _engine_for(
    label: str, prog: Program, rules: Mapping[str, tuple[int, Any]] | None = None
) -> EngineRuleset:
    """The program's engine rules (or those of `rules`) as one durable_rules ruleset."""
    if rules is None:
        rules = {name: (er.level, er.cond) for name, er in prog.engine_rules.items()}
    safe = "".join(ch if ch.isalnum() else "_" for ch in label)[:40]
    return EngineRuleset(safe, rules, prog.atom_count)
