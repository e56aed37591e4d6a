"""Advise: what it would take, which missing facts decide, what to do next (policy §8).

Every answer here is found by the engine's own evaluation of candidate changes: a change of
facts is applied to the account and the account decided again, no texts. The search
decides its candidates by the compiled conditions (`Plan.screen`: the rules the decision
reads, through the same closures every engine decision is checked against), and each path
it reports is then decided by durable_rules (`Plan.decide`) and must give what it states.
The candidates come from the compiled program, never from a list per rule: the thresholds
its conditions compare facts with (directly, or through a derived fact, found by search on
the derived fact's own formula), and the domains of the facts (enum values, booleans, list
values). Which facts a salesperson can change is the ruleset's `actionable: true`; the
qualification ladder is its `advice: ladder`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from engine.lang import expr as E
from engine.lang.model import AdviceDecl, FactDecl
from engine.lang.program import OUTCOME_VARS, Compiled, Program
from engine.limits import MAX_MAGNITUDE
from engine.runtime._durable import EngineRuleset
from engine.runtime.decide import Decision, Plan, Screen, num
from engine.runtime.render import format_value, is_number, quantity

_EPS = 0.000001  # "the threshold plus or minus 0.000001" for a number fact (policy §8)
_PAIR_BUDGET = 40  # decisions tried for two-fact paths, most promising first


@dataclass(frozen=True, slots=True)
class Change:
    fact: str
    to: Any


@dataclass(frozen=True, slots=True)
class _Threshold:
    """`name op constant` in a condition: the name is a fact, or a derived fact."""

    name: str
    op: str
    value: Any


class Advisor:
    """The advice of one compiled ruleset (its account program)."""

    def __init__(self, compiled: Compiled, plan: Plan, engine: EngineRuleset, texts: Any):
        doc = compiled.doc
        self.prog: Program = compiled.program
        self.plan, self.engine, self.texts = plan, engine, texts
        self.labels = compiled.labels
        self.currency = doc.currency
        self.advice: AdviceDecl | None = doc.advice
        self.ladder: list[str] = list(doc.advice.ladder) if doc.advice else []
        self._ranks = {q: i for i, q in reversed(list(enumerate(self.ladder)))}
        self.decls: Mapping[str, FactDecl] = doc.facts
        self.qualification_labels = {k: v.model_dump() for k, v in doc.qualifications.items()}
        self.actionable = [n for n, d in doc.facts.items() if d.actionable]
        self.derived = {d.name: d for d in self.prog.derived}
        self.rules = {r.id: r for r in self.prog.rules}
        self.thresholds = _thresholds(self.prog)
        # per number fact, in the thresholds' order: those it is compared with directly, and
        # those of the derived facts it feeds (`_static` and `_solved` read these)
        self.direct_thresholds: dict[str, list[_Threshold]] = {}
        self.derived_thresholds: dict[str, list[_Threshold]] = {}
        for t in self.thresholds:
            if isinstance(t.value, int | float):
                self.direct_thresholds.setdefault(t.name, []).append(t)
            feeds = self.derived.get(t.name)
            for f in dict.fromkeys(feeds.input_deps) if feeds is not None else ():
                self.derived_thresholds.setdefault(f, []).append(t)
        self._static_values = {n: self._static(n, d) for n, d in doc.facts.items()}
        # the facts the decision reads only as `fact op constant`: a value moves the decision
        # only through which side of each such comparison it is on (see `_new_sides`)
        self.sided = {
            f: tuple((_OPS[t.op], t.value) for t in self.thresholds if t.name == f)
            for f in _compared_only(self.prog) - set(self.plan.derived_of)
        }
        # per rule with parts, per part: the input facts its condition reads
        self.part_facts = {
            r.id: {part.id: frozenset(self._facts(part.node)) for part in r.parts}
            for r in self.prog.rules
            if r.parts
        }
        self.counts = _count_targets(self.prog)  # list fact -> [counts compared with]
        self.members = _member_targets(self.prog)  # list fact -> [values tested with `in`]
        self.decision_facts = _decision_facts(self.prog)
        # per criterion: its comparisons, each as a Kleene check (for "closer to met")
        self.criterion_checks = {
            r.id: [E.closure(c) for c in r.comparisons]
            for r in self.prog.rules
            if r.kind == "criterion"
        }
        # per criterion, the input facts a change of which can move its comparisons (None:
        # any, for one that reads an outcome variable, which any change can move)
        self.criterion_deps: dict[str, frozenset[str] | None] = {
            r.id: None if any(n in OUTCOME_VARS for n in r.reads) else frozenset(r.input_deps)
            for r in self.prog.rules
        }
        self.step_facts = {
            n.name
            for st in self.prog.steps
            if st.node is not None
            for n in E.names(st.node)
            if n.scope == "fact"
        }

    # -- the public answers
    def advise(self, d: Decision) -> dict[str, Any]:
        """`what_it_would_take` and `decisive_missing_facts` of a decision (one screen of
        the account for both: a change both searches try is decided once)."""
        screen = _Memo(self.plan.screener(d))
        return {
            "what_it_would_take": self.what_it_would_take(d, screen) if self.advice else [],
            "decisive_missing_facts": self.decisive_missing_facts(d, screen),
        }

    def rank(self, qualification: Any) -> int:
        """The qualification's step on the ladder (-1 when it is not on it)."""
        return self._ranks.get(qualification, -1) if isinstance(qualification, str) else -1

    def what_it_would_take(self, d: Decision, screen: _Memo | None = None) -> list[dict[str, Any]]:
        """Up to `max_paths` paths up: the fewest changes of facts that lift the account at
        least one step, each checked by deciding the account again with them applied."""
        assert self.advice is not None
        base = self.rank(d.qualification)
        if base == len(self.ladder) - 1:
            return []
        insufficient = base < 0
        # a path goes up: for an account of insufficient data, to a qualification above the
        # ladder's first step (being decided as `not_key_account` is no way up)
        floor = max(base, 0)
        lifting = self._lifting_rules(d)
        facts = self._missing_deciding(d) if insufficient else self._could_lift(d, lifting)
        derived = {n for r in lifting for n in r.reads if n in self.derived}
        if screen is None:
            screen = _Memo(self.plan.screener(d))
        singles: list[tuple[Change, Decision]] = []
        for change in self._candidates(d, facts, derived):
            d2 = screen.one(change)
            if d2 is not None:
                singles.append((change, d2))
        found: list[tuple[list[Change], Decision]] = [
            ([c], d2) for c, d2 in singles if self.rank(d2.qualification) > floor
        ]
        if len(found) < self.advice.max_paths and self.advice.max_changes >= 2:
            unmet = [
                (checks, sum(1 for c in checks if c(d.env) is True), self.criterion_deps[r.id])
                for r in self.prog.rules
                if r.kind == "criterion" and d.criteria.get(r.id, ("",))[0] != "met"
                for checks in [self.criterion_checks[r.id]]
            ]
            progress = [(c, x) for c, x in singles if _progress(d, x, unmet, c.fact)]
            found += self._pairs(d, floor, progress)
        best: dict[frozenset[str], tuple[list[Change], Decision]] = {}
        for changes, d2 in found:
            key = frozenset(c.fact for c in changes)
            held = best.get(key)
            if held is None or _better(d2, held[1], self.rank):
                best[key] = (changes, d2)
        ordered = sorted(
            best.values(),
            key=lambda p: (len(p[0]), -self.rank(p[1].qualification), -_score(p[1])),
        )
        return [
            self._path(d, changes, self._verified(d, d2))
            for changes, d2 in ordered[: self.advice.max_paths]
        ]

    def decisive_missing_facts(self, d: Decision, screen: _Memo | None = None) -> list[str]:
        """The missing facts some value of which changes the qualification, most decisive
        first: those that alone decide it (an account of insufficient data gets one of the
        ladder's qualifications), then the others, each in the order of missing_facts."""
        rows: list[tuple[int, int, str]] = []
        if screen is None:
            screen = _Memo(self.plan.screener(d))
        undecided = self.rank(d.qualification) < 0
        for i, fact in enumerate(self._missing_deciding(d)):
            changes = False
            decides = undecided  # alone decides: every value gives a qualification on the ladder
            for change in self._candidates(d, [fact], exact=False):
                d2 = screen.one(change)
                if d2 is None:
                    continue
                changes = changes or d2.qualification != d.qualification
                decides = decides and self.rank(d2.qualification) >= 0
                if changes and not decides:
                    break  # the rest cannot change where the fact goes
            if changes:
                rows.append((0 if decides else 1, i, fact))
        return [fact for _g, _i, fact in sorted(rows)]

    def next_actions(self, verdict: Mapping[str, Any], paths: Sequence[Mapping[str, Any]]) -> list:
        """At most `max_next_actions`: the account's own high findings, then its warnings,
        then the first path up; never a company-scope finding or part."""
        limit = self.advice.max_next_actions if self.advice else 3
        actions: list[dict[str, Any]] = []
        # the facts the actions so far act on: a part whose facts they all cover says the
        # same thing again (no key account manager: one action, not two)
        covered: set[str] = set()
        for wanted in ("high", "warning"):
            for g in verdict["guardrails"]:
                if g["severity"] != wanted or g.get("scope") == "company":
                    continue
                action = self._action(g, covered)
                if action is not None:
                    actions.append({"rule": g["rule"], "message": action[0]})
                    covered |= action[1]
        if paths:
            actions.append({"rule": "advice.what_it_would_take", "message": paths[0]["message"]})
        return actions[:limit]

    def _action(
        self, g: Mapping[str, Any], covered: set[str]
    ) -> tuple[dict[str, str], set[str]] | None:
        """What a finding asks the salesperson to do, and the facts that acts on; None when
        it has nothing to say, or only what the actions on `covered` say already."""
        rule = self.rules.get(g["rule"])
        part_facts = self.part_facts.get(g["rule"], {})
        own = [p for p in g.get("parts") or () if p["scope"] != "company"]
        message = g.get("recommendation")
        if own:
            facts: dict[str, frozenset[str]] = {
                p["part"]: part_facts.get(p["part"], frozenset()) for p in own
            }
            said = [p for p in own if p["recommendation"]]
            if said:  # each part says what to do: the parts not said already
                said = [p for p in said if not said_before(facts[p["part"]], covered)]
                if not said:
                    return None
                message = _join([p["recommendation"] for p in said])
                acts = set().union(*(facts[p["part"]] for p in said))
            else:
                acts = set().union(*facts.values())
        else:
            acts = set(rule.input_deps) if rule is not None and not g.get("parts") else set()
        if not message or said_before(acts, covered):
            return None
        return message, acts

    def _facts(self, node: Any) -> set[str]:
        """The input facts a condition reads, through derived facts too."""
        out: set[str] = set()
        for n in E.names(node):
            if n.scope == "fact":
                out.add(n.name)
            elif n.scope == "derived" and n.name in self.derived:
                out.update(self.derived[n.name].input_deps)
        return out

    # -- candidates
    def _lifting_rules(self, d: Decision) -> list[Any]:
        """The rules whose outcome could lift the account (see `_could_lift`)."""
        failing = [
            r
            for r in self.prog.rules
            if r.kind == "criterion"
            and r.decl.required
            and d.criteria.get(r.id, ("",))[0] == "not_met"
        ]
        if failing:
            return failing
        return [
            r
            for r in self.prog.rules
            if (r.kind == "criterion" and d.criteria.get(r.id, ("",))[0] != "met")
            or (r.kind == "segment" and d.outcomes.get(r.id) != "fired")
        ]

    def _could_lift(self, d: Decision, rules: list[Any] | None = None) -> list[str]:
        """The actionable facts read by what could still lift the account. A required
        criterion that is not met blocks every way up, so while one is, only its facts;
        else the criteria not fully met, the segments it is not in, and the decision steps."""
        if rules is None:
            rules = self._lifting_rules(d)
        wanted: set[str] = {f for r in rules for f in r.input_deps}
        if rules and rules[0].decl.required and d.criteria.get(rules[0].id, ("",))[0] == "not_met":
            pass  # a failing required criterion: its facts alone
        else:
            wanted.update(self.step_facts)
        return [f for f in self.actionable if f in wanted]

    def _missing_deciding(self, d: Decision) -> list[str]:
        return [f for f in d.missing_facts if f in self.decision_facts]

    def _candidates(
        self,
        d: Decision,
        facts: Iterable[str],
        derived: set[str] | None = None,
        exact: bool = True,
    ) -> list[Change]:
        """Changes of these facts worth deciding; `derived`: the derived facts whose
        thresholds to solve for (None: all); `exact`: the value nearest each threshold of
        a derived fact (else any value beyond it: enough to learn whether it matters)."""
        out: list[Change] = []
        env = d.env
        static = self._static_values
        for fact in facts:
            decl = self.decls.get(fact)
            if decl is None:
                continue
            now = d.facts.get(fact)
            # the values every account has (a domain, the sides of direct thresholds), made
            # at load; then those of this account (derived thresholds, list values)
            values = static.get(fact, ())
            more: list[Any] = []
            if decl.type in ("integer", "number"):
                more = self._solved(fact, decl, env, derived, exact)
            elif decl.type == "list":
                more = self._list_values(fact, decl, now)
            seen: list[Any] = [v for v in values if v != now]
            for v in more:
                if v is not None and v != now and v not in seen and _fits(decl, v):
                    seen.append(v)
            sides = self.sided.get(fact)
            if sides is not None and now is not None:
                seen = _new_sides(seen, now, sides)
            out.extend(Change(fact, v) for v in seen)
        return out

    def _static(self, fact: str, decl: FactDecl) -> list[Any]:
        """A fact's candidate values that do not depend on the account, in order, unique."""
        values: list[Any] = []
        if decl.type == "boolean":
            values = [True, False]
        elif decl.type == "enum":
            values = list(decl.values or ())
        elif decl.type in ("integer", "number"):
            integer = decl.type == "integer"
            for t in self.direct_thresholds.get(fact, ()):
                values.extend(_sides(t.op, t.value, integer))
        seen: list[Any] = []
        for v in values:
            if v is not None and v not in seen and _fits(decl, v):
                seen.append(v)
        return seen

    def _solved(
        self,
        fact: str,
        decl: FactDecl,
        env: Mapping[str, Any],
        only: set[str] | None = None,
        exact: bool = True,
    ) -> list[Any]:
        """Values of a number fact that cross the thresholds of the derived facts it feeds,
        for this account (those it is compared with directly are in `_static`)."""
        out: list[Any] = []
        for t in self.derived_thresholds.get(fact, ()):
            if only is not None and t.name not in only:
                continue
            x = _solve(self.derived[t.name].fn, env, fact, t, decl, exact)
            if x is not None:
                out.append(x)
        return out

    def _list_values(self, fact: str, decl: FactDecl, now: Any) -> list[Any]:
        current = list(now or [])
        domain = [v for v in decl.values or () if v not in current]
        out: list[Any] = []
        for k in self.counts.get(fact, ()):
            for target in (int(k), int(k) + 1):
                need = target - len(current)
                if 0 < need <= len(domain):
                    out.append(current + domain[:need])
        for v in self.members.get(fact, ()):
            if v not in current:
                out.append(current + [v])
        return out

    # -- search
    @staticmethod
    def _screen(screen: Screen, changes: Sequence[Change]) -> Decision | None:
        """The account decided again with these changes, by the compiled conditions alone
        (`decide.Screen`): the search's evaluation of a candidate."""
        try:
            return screen({c.fact: c.to for c in changes})
        except Exception:  # a combination the ruleset cannot decide is no path
            return None

    def _verified(self, d: Decision, screened: Decision) -> Decision:
        """A path the search found, decided by the engine with its changes applied
        (`Plan.confirm`): what the path states is then what the engine decides."""
        self.plan.confirm(self.engine, screened)
        return screened

    def _pairs(
        self, d: Decision, base: int, progress: list[tuple[Change, Decision]]
    ) -> list[tuple[list[Change], Decision]]:
        """Two-fact paths, most promising first (the two changes' score gains added), each
        minimal: neither change alone reaches the pair's qualification."""
        s0 = _score(d)
        gain = {id(x): _score(x) - s0 for _c, x in progress}
        pairs = [(a, b) for a, b in combinations(progress, 2) if a[0].fact != b[0].fact]
        pairs.sort(key=lambda p: -(gain[id(p[0][1])] + gain[id(p[1][1])]))
        found: list[tuple[list[Change], Decision]] = []
        # a pair is screened as its second change on top of the first one's decision: the
        # rules that read only the first keep what its screen found (`decide.Screen`)
        on: dict[int, Screen] = {}
        for (a, da), (b, db) in pairs[:_PAIR_BUDGET]:
            then = on.get(id(da))
            if then is None:
                then = on[id(da)] = self.plan.screener(da)
            d3 = self._screen(then, [b])
            if d3 is None:
                continue
            q3 = self.rank(d3.qualification)
            if q3 > base and self.rank(da.qualification) < q3 and self.rank(db.qualification) < q3:
                found.append(([a, b], d3))
        return found

    # -- words
    def _path(self, d: Decision, changes: list[Change], d2: Decision) -> dict[str, Any]:
        rows = [{"fact": c.fact, "from": d.facts.get(c.fact), "to": c.to} for c in changes]
        message = {lang: self._path_text(d, rows, d2, lang) for lang in ("en", "zh")}
        return {
            "changes": rows,
            "qualification": d2.qualification,
            "score": d2.score,
            "message": message,
        }

    def _path_text(self, d: Decision, rows: list[dict[str, Any]], d2: Decision, lang: str) -> str:
        q = self.qualification_labels.get(str(d2.qualification), {}).get(lang, d2.qualification)
        score = num(d2.score)
        said = []
        for r in rows:
            label = self.fact_label(r["fact"], lang)
            to = self.value_text(r["fact"], r["to"], lang)
            if r["from"] is None:
                said.append(
                    f"{label}（尚不清楚）为{to}"
                    if lang == "zh"
                    else f"{label} (not known yet) is {to}"
                )
                continue
            was = self.value_text(r["fact"], r["from"], lang)
            if lang == "en":
                said.append(f"{label} went from {was} to {to}")
            elif is_number(r["from"]) and is_number(r["to"]):
                # 「从0次增加到1次」: a number rises or falls; other values change (变为)
                verb = "增加到" if r["to"] > r["from"] else "减少到"
                said.append(f"{label}从{was}{verb}{to}")
            else:
                said.append(f"{label}从{was}变为{to}")
        if lang == "zh":
            return "如果" + "，并且".join(said) + f"，即可成为{q}（{score}分）。"
        return f"It would be {_article(q)}, with {score} points, if " + " and ".join(said) + "."

    def fact_label(self, fact: str, lang: str) -> str:
        decl = self.decls.get(fact)
        if decl is not None and decl.label is not None:
            return getattr(decl.label, lang)
        return fact.replace("_", " ")

    def value_text(self, fact: str, value: Any, lang: str) -> str:
        """A value of the fact as a change of it reads: a label for an enum or list value,
        a number in figures with its unit word (「0次」, "1,200 units"; never "none")."""
        decl = self.decls.get(fact)
        unit = decl.unit if decl is not None else None
        if is_number(value):
            return quantity(value, unit, lang, self.currency, self.prog.words.get(fact))
        table = self.labels.get(fact, {})
        if isinstance(value, list):
            value = [table[v][lang] if v in table else v for v in value]
        elif isinstance(value, str) and value in table:
            value = table[value][lang]
        return format_value(value, unit, lang, self.currency)


class _Memo:
    """One account's screen, with what each one-fact change gave (both searches of the
    advice try some of the same changes)."""

    __slots__ = ("screen", "seen")

    def __init__(self, screen: Screen):
        self.screen = screen
        self.seen: dict[tuple[str, Any], Decision | None] = {}

    def one(self, change: Change) -> Decision | None:
        to = change.to
        key = (change.fact, tuple(to) if isinstance(to, list) else to)
        seen = self.seen
        if key in seen:
            return seen[key]
        got = seen[key] = Advisor._screen(self.screen, (change,))
        return got


# --------------------------------------------------------------------------- helpers


def said_before(acts: Set[str], covered: Set[str]) -> bool:
    """An action on these facts only repeats what the actions so far say."""
    return bool(acts) and acts <= covered


def _article(label: str) -> str:
    """`a key account`, `an important institution`; a label that is a phrase of its own
    (`not a key account`, `the ...`) as it is."""
    if label.split(" ", 1)[0].lower() in ("a", "an", "the", "not", "no"):
        return label
    return ("an " if label[:1].lower() in "aeiou" else "a ") + label


def _join(texts: list[dict[str, str]]) -> dict[str, str]:
    return {"en": " ".join(t["en"] for t in texts), "zh": "".join(t["zh"] for t in texts)}


def _score(d: Decision) -> float:
    s = d.score
    return float(s) if isinstance(s, int | float) else 0.0


def _better(a: Decision, b: Decision, rank: Callable[[Any], int]) -> bool:
    return (rank(a.qualification), _score(a)) > (rank(b.qualification), _score(b))


def _progress(d: Decision, d2: Decision, unmet: Sequence[Any], fact: str) -> bool:
    """Could this change of `fact` help on the way up (combined with another)? It raises
    the score, clears a required criterion, adds a segment, or makes more of the
    comparisons of a criterion that is not met hold (a criterion of two conditions needs
    both changes); a criterion that does not read the fact keeps its comparisons."""
    e, e2 = d.env, d2.env
    segments, segments2 = e.get("segments", ()), e2.get("segments", ())
    if (
        _score(d2) > _score(d)
        or e2.get("required_not_met", 0) < e.get("required_not_met", 0)
        or e2.get("required_not_evaluable", 0) < e.get("required_not_evaluable", 0)
        # a screen keeps the account's own list where no segment rule moved
        or (segments2 is not segments and bool(set(segments2) - set(segments)))
    ):
        return True
    for checks, before, deps in unmet:  # (a criterion's comparisons, how many hold today)
        if (deps is None or fact in deps) and sum(1 for c in checks if c(e2) is True) > before:
            return True
    return False


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _new_sides(values: list[Any], now: Any, sides: Sequence[tuple[Any, Any]]) -> list[Any]:
    """The values of a fact compared only with constants that are on a new side of its
    comparisons: not the side of today's value (the decision would not move), nor that of
    an earlier value (it would move the same way), in order."""

    def side(v: Any) -> tuple[bool, ...] | None:
        try:
            return tuple(bool(op(v, c)) for op, c in sides)
        except TypeError:  # a value its comparisons cannot order: keep it
            return None

    taken = {side(now)}
    out = []
    for v in values:
        where = side(v)
        if where is None or where not in taken:
            out.append(v)
            taken.add(where)
    return out


def _compared_only(prog: Program) -> set[str]:
    """The input facts the deciding rules and steps read only as `fact op constant` (or a
    param): never inside arithmetic, a call, `in`, or against another fact."""
    nodes = []
    for r in prog.rules:
        if r.kind in ("criterion", "segment", "stage"):
            nodes += [r.cond, *(n for n in [r.partly] if n is not None)]
    nodes += [s.node for s in prog.steps if s.node is not None]
    good: set[str] = set()
    bad: set[str] = set()

    def visit(n: Any, alone: bool) -> None:
        if isinstance(n, E.Name):
            if n.scope == "fact":
                (good if alone else bad).add(n.name)
            return
        if isinstance(n, E.Cmp):
            for a, b in ((n.left, n.right), (n.right, n.left)):
                constant = isinstance(b, E.Const) or (isinstance(b, E.Name) and b.scope == "param")
                visit(a, constant)
            return
        for c in E.children(n):
            visit(c, False)

    for node in nodes:
        visit(node, False)
    return good - bad


def _fits(decl: FactDecl, v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return True
    lo = decl.min if decl.min is not None else -MAX_MAGNITUDE
    hi = decl.max if decl.max is not None else MAX_MAGNITUDE
    return lo <= v <= hi and (decl.type != "integer" or float(v).is_integer())


def _sides(op: str, c: Any, integer: bool) -> list[Any]:
    """Values just on both sides of `x op c` (policy §8: the threshold itself for ≥ and ≤;
    the next integer, or the threshold ± 0.000001, for > and <)."""
    if integer:
        lo_i, hi_i = math.ceil(c) - 1 if float(c).is_integer() else math.floor(c), math.floor(c) + 1
        at = int(c) if float(c).is_integer() else None
        values = [v for v in (at, lo_i, hi_i) if v is not None]
        return [int(v) for v in values]
    step = _EPS
    if op in (">=", "<="):
        return [c, c - step if op == ">=" else c + step]
    if op in (">", "<"):
        return [c + step if op == ">" else c - step, c]
    return [c, c + step]


def _solve(
    fn: Callable[[Mapping[str, Any]], Any],
    env: Mapping[str, Any],
    fact: str,
    t: _Threshold,
    decl: FactDecl,
    exact: bool = True,
) -> Any:
    """A value of `fact` that flips `derived op threshold` for this account, if one is
    found: an expanding search from its value, then (`exact`) bisection on the derived
    formula for the value nearest the threshold."""
    cmp = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}.get(t.op)
    if cmp is None or not isinstance(t.value, int | float):
        return None
    x0 = env.get(fact)
    if x0 is None:  # not known yet: search from the bottom of its domain
        x0 = decl.min if decl.min is not None else 0
    if not isinstance(x0, int | float) or isinstance(x0, bool):
        return None

    scratch = dict(env)
    limit = float(t.value)

    def holds(x: float) -> bool | None:
        scratch[fact] = x
        v = fn(scratch)
        return None if v is None else cmp(float(E.rnd(v)), limit)

    now = holds(float(x0))
    if now is None:
        return None
    lo = decl.min if decl.min is not None else -MAX_MAGNITUDE
    hi = decl.max if decl.max is not None else MAX_MAGNITUDE
    for direction in (1, -1):
        # the far end of the domain first: where the derived fact is monotone in this
        # fact (sums, products and ratios of amounts, as the rulesets write them), an end
        # that keeps today's answer means no value on that side flips it, and the
        # expanding search (up to 50 evaluations) is spared
        edge = hi if direction > 0 else lo
        if holds(float(edge)) == now:
            continue
        step = max(abs(float(x0)), 1.0)
        far = float(x0)
        for _ in range(50):
            far = min(hi, max(lo, far + direction * step))
            there = holds(far)
            if there is not None and there != now:
                break
            if far in (lo, hi):
                far = math.nan
                break
            step *= 2
        else:
            far = math.nan
        if math.isnan(far):
            continue
        if not exact:  # a value beyond the threshold is all that was asked
            x = float(math.ceil(far) if direction > 0 else math.floor(far))
            if decl.type != "integer" and holds(x) == now:
                x = far
            if holds(x) != now and lo <= x <= hi:
                return int(x) if float(x).is_integer() and abs(x) < 2**53 else x
            continue
        near = float(x0)
        whole = math.ceil if direction > 0 else math.floor
        x = math.nan
        for _ in range(40):  # bisection: `near` keeps today's answer, `far` the other
            mid = (near + far) / 2
            if mid in (near, far):
                break
            if holds(mid) == now:
                near = mid
            else:
                far = mid
            if math.isnan(x) and math.floor(near) == math.floor(far) and near != far:
                # the boundary lies strictly inside one whole-number cell: the whole figure
                # on its far side is known; more bisection only serves the exact boundary
                x = float(whole(far))
                if holds(x) != now:
                    break
        # a whole figure on the far side (integer facts must be whole; for amounts it reads
        # better), else the exact boundary found
        x = float(whole(far))
        if decl.type != "integer" and holds(x) == now:
            x = far
        if holds(float(x)) != now and lo <= x <= hi:
            return int(x) if float(x).is_integer() and abs(x) < 2**53 else x
    return None


def _thresholds(prog: Program) -> list[_Threshold]:
    """Every `name op constant` of every condition (either side), as `name op value`."""
    out: list[_Threshold] = []
    nodes = []
    for r in prog.rules:
        nodes += [r.cond, *(n for n in [r.partly] if n is not None)]
    nodes += [s.node for s in prog.steps if s.node is not None]
    for node in nodes:
        for x in E.walk(node):
            if not isinstance(x, E.Cmp):
                continue
            left, right = x.left, x.right
            for name_side, const_side, op in (
                (left, right, x.op),
                (right, left, E.FLIPPED_OP[x.op]),
            ):
                if (
                    isinstance(name_side, E.Name)
                    and name_side.scope in ("fact", "derived")
                    and (
                        isinstance(const_side, E.Const)
                        or (isinstance(const_side, E.Name) and const_side.scope == "param")
                    )
                ):
                    t = _Threshold(name_side.name, op, const_side.value)
                    if t not in out:
                        out.append(t)
    return out


def _count_targets(prog: Program) -> dict[str, list[Any]]:
    """List facts whose count (`len(list)`) is compared with a constant: the constants."""
    out: dict[str, list[Any]] = {}
    for r in prog.rules:
        for x in E.walk(r.cond):
            if isinstance(x, E.Cmp):
                for a, b in ((x.left, x.right), (x.right, x.left)):
                    if (
                        isinstance(a, E.Call)
                        and a.func in ("len", "count")
                        and isinstance(a.args[0], E.Name)
                        and a.args[0].scope == "fact"
                    ):
                        v = b.value if isinstance(b, E.Const | E.Name) else None
                        if isinstance(v, int | float) and not isinstance(v, bool):
                            out.setdefault(a.args[0].name, []).append(v)
    return out


def _member_targets(prog: Program) -> dict[str, list[Any]]:
    """List facts tested with `'value' in list`: the values."""
    out: dict[str, list[Any]] = {}
    for r in prog.rules:
        for x in E.walk(r.cond):
            if (
                isinstance(x, E.In)
                and isinstance(x.container, E.Name)
                and x.container.scope == "fact"
                and isinstance(x.item, E.Const)
            ):
                out.setdefault(x.container.name, []).append(x.item.value)
    return out


def _decision_facts(prog: Program) -> set[str]:
    """The input facts the qualification can depend on: what the decision steps read,
    through the outcome variables (criteria for the score, segments, stage) or directly."""
    read_vars: set[str] = set()
    facts: set[str] = set()
    for s in prog.steps:
        if s.node is None:
            continue
        for n in E.names(s.node):
            if n.scope == "outcome":
                read_vars.add(n.name)
            elif n.scope == "fact":
                facts.add(n.name)
    producers = {
        "criterion": any(v.startswith(("score", "required_")) for v in read_vars),
        "segment": "segments" in read_vars,
        "stage": "stage" in read_vars,
    }
    derived_deps = {d.name: d.input_deps for d in prog.derived}
    for r in prog.rules:
        if producers.get(r.kind):
            facts.update(r.input_deps)
    for s in prog.steps:
        if s.node is not None:
            for n in E.names(s.node):
                if n.scope == "derived":
                    facts.update(derived_deps.get(n.name, ()))
    return facts
