"""A prepared ruleset: compiled once, evaluated many times into plain, JSON-ready verdicts."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.errors import Diagnostic, EngineError, FactsError, RulesetError
from engine.lang.compile import OUTCOME_VARS, Compiled, Program, Rule, compile_source
from engine.lang.model import SEVERITY_RANK
from engine.runtime import facts as F
from engine.runtime._durable import EngineRuleset
from engine.runtime.evaluator import Run, num, plan_for, points
from engine.runtime.render import compile_template, placeholders


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
        self._renderers: dict[int, Callable[[Mapping[str, Any]], dict[str, str]]] = {}
        self._rendered: dict[tuple[Any, ...], tuple[str, str]] = {}
        self._vplan = tuple(self._verdict_plan(r) for r in self._prog.rules)
        self._read_derived = _reader(tuple(d.name for d in self._prog.derived))

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
        findings: list[dict[str, Any]] = []
        for r in self._port.rules:
            if run.outcomes[r.id] != "fired":
                continue
            sev = run.severity.get(r.id) or r.decl.severity or "info"
            findings.append(
                {
                    "rule": r.id,
                    "severity": sev,
                    "message": self._message_fn(r, "fired", self._port)(env),
                    "recommendation": self._text(r.recommendation, env, self._port),
                    "facts": {n: env.get(n) for n in r.reads},
                }
            )
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
        self._engine.close()
        if self._port_engine is not None:
            self._port_engine.close()

    # -- verdict assembly
    def _verdict(self, facts: Mapping[str, Any], run: Run, texts: bool = True) -> dict[str, Any]:
        prog = self._prog
        env = run.env
        get = env.get
        outcomes, severity, undecided, results = (
            run.outcomes,
            run.severity,
            run.undecided,
            run.criteria,
        )
        stage = get("stage")
        criteria = []
        guardrails = []
        trace = []
        missing: set[str] = set()
        recommendations: list[dict[str, Any]] = []
        for (
            rid,
            kind,
            reads,
            input_deps,
            esc_deps,
            records,
            required,
            full,
            default_severity,
            rule_stage,
            say,
            recommend,
            playbook,
        ) in self._vplan:
            outcome = outcomes[rid]
            read = reads(get)  # env holds the facts exactly as given
            if outcome == "not_evaluable":
                missing.update(n for n in input_deps if n not in facts)
            elif outcome == "fired" and rid in undecided:
                # an escalation left unknown did not raise the severity: say what would decide it
                for j in undecided[rid]:
                    missing.update(n for n in esc_deps[j] if n not in facts)
            comparisons = records(env) if texts and records is not None else []
            if kind == "criterion":
                c_out, pts = results[rid]
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
                        "max_points": full,
                        "required": required,
                        "message": say[c_out](env) if texts else None,
                        "facts": read,
                    }
                )
            elif kind == "guardrail" and outcome == "fired":
                sev = severity.get(rid) or default_severity or "warning"
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
                guardrails.append(
                    {
                        "rule": rid,
                        "severity": sev,
                        "message": say["fired"](env) if texts else None,
                        "recommendation": recommend(env) if texts and recommend else None,
                        "facts": read,
                    }
                )
            else:
                if rule_stage is not None and outcome == "fired" and stage == rule_stage:
                    recommendations = [
                        {"rule": rid, "message": item(env) if texts else None} for item in playbook
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
        step = prog.steps[run.step] if run.step is not None else None
        summary = self._text(step.reason, env, prog) if texts and step and step.reason else None
        qualification = get("qualification")
        return {
            "account_id": facts.get("account_id"),
            "ruleset": dict(self._ruleset_ref),
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
            "missing_facts": sorted(missing),
            "derived": self._read_derived(get),
            "trace": trace,
        }

    def _verdict_plan(self, r: Rule) -> tuple[Any, ...]:
        """What verdict assembly reads of one rule, flattened once, its texts ready to fill."""
        prog = self._prog
        outcomes = (
            ("met", "partly_met", "not_met", "not_evaluable")
            if r.kind == "criterion"
            else ("fired",)
        )
        say = {o: self._message_fn(r, o, prog) for o in outcomes}
        recommend = self._text_fn(r.recommendation, prog) if r.recommendation else None
        return (
            r.id,
            r.kind,
            _reader(tuple(r.reads)),
            tuple(r.input_deps),
            tuple(tuple(d) for d in r.esc_input_deps),
            r.records_fn,
            r.decl.required,
            points(r)[0],
            r.decl.severity,
            r.decl.stage if r.kind == "stage" else None,
            say,
            recommend,
            tuple(self._text_fn(item, prog) for item in r.playbook),
        )

    def _message_fn(
        self, r: Rule, outcome: str, prog: Program
    ) -> Callable[[Mapping[str, Any]], dict[str, str]]:
        text = r.messages.get(outcome)
        if text is None:
            default = _default_message(r, outcome)
            return lambda env: dict(default)
        return self._text_fn(text, prog)

    def _text_fn(
        self, text: Mapping[str, str], prog: Program
    ) -> Callable[[Mapping[str, Any]], dict[str, str]]:
        renderer = self._renderers.get(id(text))
        if renderer is None:
            renderer = self._renderers[id(text)] = self._renderer(text, prog)
        return renderer

    @staticmethod
    def _may_be_list(name: str, prog: Program) -> bool:
        decl = prog.facts.get(name)
        if decl is not None:
            return decl.type == "list"
        if name in OUTCOME_VARS:
            return OUTCOME_VARS[name] == "list"
        return any(d.name == name and d.node.type.kind == "list" for d in prog.derived)

    def _text(
        self, text: Mapping[str, str] | None, env: Mapping[str, Any], prog: Program
    ) -> dict[str, str] | None:
        if text is None:
            return None
        return self._text_fn(text, prog)(env)

    def _renderer(
        self, text: Mapping[str, str], prog: Program
    ) -> Callable[[Mapping[str, Any]], dict[str, str]]:
        """env -> the text in both languages, memoised where that pays.

        Params are rendered into the templates once. Rendering is a pure function of the
        template and the per-account values it names; accounts share many of those values
        (enums, booleans, small counts), so the memo key is the template and those values.
        Values of one static type print alike whether `1` or `1.0`, except through `:raw`,
        so only templates with a `:raw` placeholder put the values' types into the key.
        A template whose texts rarely repeat (it names the account, or an amount) stops
        using the memo after a trial: its key would cost more than it saves.
        """
        params = prog.params
        used = [(n, spec) for lang in ("en", "zh") for n, spec in placeholders(text[lang])]
        names = tuple(dict.fromkeys(n for n, _spec in used if n not in params))
        fixed = {n: params[n] for n, _spec in used if n in params}
        typed = any(spec == "raw" for _n, spec in used)
        # names that can hold a list (unhashable) go into the key as tuples
        listy = tuple(i for i, n in enumerate(names) if self._may_be_list(n, prog))
        args = (prog.units, self.currency, self._c.labels, self._c.missing)
        fill_en = compile_template(text["en"], args[0], "en", *args[1:], constants=fixed)
        fill_zh = compile_template(text["zh"], args[0], "zh", *args[1:], constants=fixed)
        if not names:  # the same text for every account
            en, zh = fill_en({}), fill_zh({})
            return lambda env: {"en": en, "zh": zh}
        memo = self._rendered
        tid = id(text)
        trial = [0, 0]  # calls and memo hits while deciding whether the memo pays
        direct = False

        def rendered(env: Mapping[str, Any]) -> dict[str, str]:
            nonlocal direct
            if direct:
                return {"en": fill_en(env), "zh": fill_zh(env)}
            vals = tuple(map(env.get, names))
            hashable = vals
            if listy:
                lv = list(vals)
                for i in listy:
                    if type(x := lv[i]) is list:
                        lv[i] = tuple(x)
                hashable = tuple(lv)
            key = (tid, hashable, tuple(map(type, vals))) if typed else (tid, hashable)
            try:
                hit = memo.get(key)
            except TypeError:  # a list where none was expected: render without the memo
                return {"en": fill_en(env), "zh": fill_zh(env)}
            if hit is None:
                hit = (fill_en(env), fill_zh(env))
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[key] = hit
            elif trial[0] < _TRIAL:
                trial[1] += 1
            if trial[0] < _TRIAL:
                trial[0] += 1
                if trial[0] == _TRIAL and trial[1] < _TRIAL // 4:
                    direct = True
            return {"en": hit[0], "zh": hit[1]}

        return rendered


_MEMO_SIZE = 20_000
_TRIAL = 400  # renderings before a template's memo use is decided (a quarter must hit)


def _reader(names: tuple[str, ...]) -> Callable[[Callable[[str], Any]], dict[str, Any]]:
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


# --------------------------------------------------------------------------- evaluation core


def _engine_for(label: str, prog: Program) -> EngineRuleset:
    rules = {name: (er.level, er.cond) for name, er in prog.engine_rules.items()}
    safe = "".join(ch if ch.isalnum() else "_" for ch in label)[:40]
    return EngineRuleset(safe, rules, prog.atom_count)


def _run(prog: Program, engine: EngineRuleset, facts: Mapping[str, Any]) -> Run:
    """One evaluation of `prog` (the engine decides; the explanation checks)."""
    return plan_for(prog).run(engine, facts)


def _default_message(r: Rule, outcome: str) -> dict[str, str]:
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
