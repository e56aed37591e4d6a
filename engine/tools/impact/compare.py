"""Verdicts of both sides compared account by account, as they come.

`Comparison` takes one account at a time and keeps only counts, the `top` most telling
changed accounts (with their two compact verdicts) and, for every changed account, its id
and two qualifications: memory grows with the number of accounts that change, by about
100 bytes each, never with the corpus. `compare_verdicts` runs it over lists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

INVALID = "invalid"  # pseudo-qualification of an account a side rejects


@dataclass
class _Summary:
    qualification: str
    score: float | None = None
    segments: tuple[str, ...] = ()
    stage: str | None = None
    guardrails: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"qualification": INVALID, "error": self.error}
        return {
            "qualification": self.qualification,
            "score": self.score,
            "segments": list(self.segments),
            "stage": self.stage,
            "guardrails": dict(self.guardrails),
        }


def _summarize(verdict: Any) -> _Summary:
    if not isinstance(verdict, Mapping):
        return _Summary(qualification=INVALID, error=str(verdict) or type(verdict).__name__)
    return _Summary(
        qualification=str(verdict.get("qualification")),
        score=verdict.get("score"),
        segments=tuple(sorted(verdict.get("segments") or ())),
        stage=verdict.get("stage"),
        guardrails={g["rule"]: g.get("severity") for g in verdict.get("guardrails") or ()},
    )


def compact(verdict: Any) -> Any:
    """The parts of a verdict the diff reads (messages dropped); an error becomes its text."""
    if not isinstance(verdict, Mapping):
        return str(verdict) or type(verdict).__name__
    return {
        "qualification": verdict.get("qualification"),
        "score": verdict.get("score"),
        "segments": verdict.get("segments"),
        "stage": verdict.get("stage"),
        "guardrails": [
            {"rule": g.get("rule"), "severity": g.get("severity")}
            for g in verdict.get("guardrails") or ()
        ],
        "trace": [
            {
                "rule": t.get("rule"),
                "outcome": t.get("outcome"),
                "points": t.get("points"),
                "severity": t.get("severity"),
                "facts": t.get("facts"),
            }
            for t in verdict.get("trace") or ()
        ],
    }


def _trace(verdict: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(verdict, Mapping):
        return {}
    return {t["rule"]: t for t in verdict.get("trace") or () if isinstance(t, Mapping)}


@dataclass(frozen=True)
class _ParamReads:
    """The changed params, and which of them each rule and the decision steps read."""

    values: Mapping[str, tuple[Any, Any]]
    by_rule: Mapping[str, Sequence[str]] | None = None  # None: unknown, show all on a move
    by_decision: Sequence[str] | None = None

    def of_rule(self, rid: str) -> list[str]:
        return [n for n in (self.by_rule or {}).get(rid, ()) if n in self.values]

    def of_decision(self) -> list[str]:
        names = self.values if self.by_decision is None else self.by_decision
        return [n for n in names if n in self.values]


def _moving_facts(
    base: Any, head: Any, params: _ParamReads
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rules whose outcome changed, and the facts and changed params they read.

    A value that differs between the sides is shown as `{"base": ..., "head": ...}`.
    """
    bt, ht = _trace(base), _trace(head)
    rules = []
    facts: dict[str, Any] = {}
    for rid in [*bt, *(r for r in ht if r not in bt)]:
        b, h = bt.get(rid, {}), ht.get(rid, {})
        b_out = (b.get("outcome"), b.get("points"), b.get("severity"))
        h_out = (h.get("outcome"), h.get("points"), h.get("severity"))
        if b_out == h_out:
            continue
        rules.append({"rule": rid, "base": _outcome_label(b), "head": _outcome_label(h)})
        bf, hf = b.get("facts") or {}, h.get("facts") or {}
        for name in [*bf, *(n for n in hf if n not in bf)]:
            if name in facts:
                continue
            bv, hv = bf.get(name), hf.get(name)
            facts[name] = hv if bv == hv or name not in bf else {"base": bv, "head": hv}
        for name in params.of_rule(rid):
            bv, hv = params.values[name]
            facts.setdefault(name, {"base": bv, "head": hv})
    if isinstance(base, Mapping) and isinstance(head, Mapping):
        if base.get("qualification") != head.get("qualification"):
            # The decision steps compare the score with params: show what they read.
            bs, hs = base.get("score"), head.get("score")
            facts.setdefault("score", hs if bs == hs else {"base": bs, "head": hs})
            for name in params.of_decision():
                bv, hv = params.values[name]
                facts.setdefault(name, {"base": bv, "head": hv})
    return rules, facts


def _outcome_label(t: Mapping[str, Any]) -> str:
    if not t:
        return "absent"
    label = str(t.get("outcome"))
    if t.get("severity"):
        label += f" ({t['severity']})"
    elif t.get("points") is not None and t.get("outcome") == "fired":
        label += f" ({num(t['points'])} pts)"
    return label


def num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


class Comparison:
    """The verdict part of the impact report, built one account at a time.

    `changed_params` maps a param to its (base, head) values; `rule_params` and
    `decision_params` say which of them each rule and the decision steps read, so that
    the top accounts show the params that moved them. `order` lists the qualifications
    best first (the ruleset's `qualification_order()`); others follow by name.
    """

    def __init__(
        self,
        *,
        top: int = 10,
        changed_params: Mapping[str, tuple[Any, Any]] | None = None,
        rule_params: Mapping[str, Sequence[str]] | None = None,
        decision_params: Sequence[str] | None = None,
        order: Sequence[str] = (),
    ) -> None:
        self.top = max(top, 0)
        self.params = _ParamReads(changed_params or {}, rule_params, decision_params)
        self.order = list(order)
        self.count = 0
        self.transitions: dict[str, Counter[str]] = {}
        self.guard_new: Counter[str] = Counter()
        self.guard_cleared: Counter[str] = Counter()
        self.guard_severity: Counter[str] = Counter()
        self.seg_added: Counter[str] = Counter()
        self.seg_removed: Counter[str] = Counter()
        self.stage_moves: Counter[tuple[Any, Any]] = Counter()
        self.invalid = {"base": 0, "head": 0}
        self.score_changed = 0
        self.score_sum = 0.0
        self.score_min = 0.0
        self.score_max = 0.0
        self.raised = 0
        self.lowered = 0
        # (index, account_id, base qualification, head qualification), in corpus order
        self.changed: list[tuple[int, Any, str, str]] = []
        self._best: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def add(self, account: Mapping[str, Any], base: Any, head: Any) -> None:
        """One account and its two (compact) verdicts, or the errors its sides raised."""
        i = self.count
        self.count += 1
        b, h = _summarize(base), _summarize(head)
        self.invalid["base"] += b.error is not None
        self.invalid["head"] += h.error is not None
        self.transitions.setdefault(b.qualification, Counter())[h.qualification] += 1
        if b == h:
            return
        for rule in h.guardrails.keys() - b.guardrails.keys():
            self.guard_new[rule] += 1
        for rule in b.guardrails.keys() - h.guardrails.keys():
            self.guard_cleared[rule] += 1
        for rule in b.guardrails.keys() & h.guardrails.keys():
            if b.guardrails[rule] != h.guardrails[rule]:
                self.guard_severity[rule] += 1
        for seg in set(h.segments) - set(b.segments):
            self.seg_added[seg] += 1
        for seg in set(b.segments) - set(h.segments):
            self.seg_removed[seg] += 1
        if b.stage != h.stage and b.error is None and h.error is None:
            self.stage_moves[(b.stage, h.stage)] += 1
        delta: float | None = None
        if isinstance(b.score, int | float) and isinstance(h.score, int | float):
            delta = float(h.score) - float(b.score)
            if delta:
                self._score(delta)
        moved = b.qualification != h.qualification
        guard_changes = len(b.guardrails.keys() ^ h.guardrails.keys())
        self.changed.append((i, account.get("account_id"), b.qualification, h.qualification))
        if not self.top:
            return
        key = (not moved, -abs(delta or 0.0), -guard_changes, i)
        if len(self._best) >= self.top and key >= self._best[-1][0]:
            return
        rules, facts = _moving_facts(base, head, self.params)
        entry = {
            "index": i,
            "account_id": account.get("account_id"),
            "name": account.get("name"),
            "base": b.as_dict(),
            "head": h.as_dict(),
            "score_delta": delta,
            "rules": rules,
            "facts": facts,
        }
        self._best.append((key, entry))
        self._best.sort(key=lambda item: item[0])
        del self._best[self.top :]

    def _score(self, delta: float) -> None:
        if not self.score_changed:
            self.score_min = self.score_max = delta
        self.score_changed += 1
        self.score_sum += delta
        self.score_min = min(self.score_min, delta)
        self.score_max = max(self.score_max, delta)
        self.raised += delta > 0
        self.lowered += delta < 0

    def report(self) -> dict[str, Any]:
        quals = self._ordered(
            {q for q in self.transitions} | {q for c in self.transitions.values() for q in c}
        )
        t = self.transitions
        guard_rules = sorted(
            self.guard_new.keys() | self.guard_cleared.keys() | self.guard_severity.keys()
        )
        moved = sum(n for bq, row in t.items() for hq, n in row.items() if bq != hq)
        return {
            "accounts": self.count,
            "changed": len(self.changed),
            "qualification_moved": moved,
            "invalid": dict(self.invalid),
            "qualifications": quals,
            "transitions": {bq: {hq: t.get(bq, Counter())[hq] for hq in quals} for bq in quals},
            "guardrails": [
                {
                    "rule": rule,
                    "newly_fired": self.guard_new[rule],
                    "cleared": self.guard_cleared[rule],
                    "severity_changed": self.guard_severity[rule],
                }
                for rule in guard_rules
            ],
            "segments": [
                {"segment": s, "added": self.seg_added[s], "removed": self.seg_removed[s]}
                for s in sorted(self.seg_added.keys() | self.seg_removed.keys())
            ],
            "stages": [
                {"base": b, "head": h, "count": n}
                for (b, h), n in sorted(self.stage_moves.items(), key=lambda x: (-x[1], str(x[0])))
            ],
            "scores": {
                "changed": self.score_changed,
                "mean_delta": self.score_sum / self.score_changed if self.score_changed else 0.0,
                "min_delta": self.score_min,
                "max_delta": self.score_max,
                "raised": self.raised,
                "lowered": self.lowered,
            },
            "top": [entry for _, entry in self._best],
            # Every changed account, in corpus order, for tools that read the JSON report.
            "changed_accounts": [
                {"account_id": aid, "base": bq, "head": hq} for _, aid, bq, hq in self.changed
            ],
        }

    def _ordered(self, quals: Iterable[str]) -> list[str]:
        rank = {q: i for i, q in enumerate(self.order)}
        rank.setdefault(INVALID, len(rank) + 1_000_000)
        return sorted(quals, key=lambda q: (rank.get(q, len(self.order)), q == INVALID, q))


def compare_verdicts(
    accounts: Sequence[Mapping[str, Any]],
    base: Sequence[Any],
    head: Sequence[Any],
    *,
    top: int = 10,
    changed_params: Mapping[str, tuple[Any, Any]] | None = None,
    rule_params: Mapping[str, Sequence[str]] | None = None,
    decision_params: Sequence[str] | None = None,
    order: Sequence[str] = (),
) -> dict[str, Any]:
    """Compare the verdicts (or per-account errors) of both sides, account by account."""
    if not len(accounts) == len(base) == len(head):
        raise ValueError("accounts, base and head verdicts differ in length")
    c = Comparison(
        top=top,
        changed_params=changed_params,
        rule_params=rule_params,
        decision_params=decision_params,
        order=order,
    )
    for account, b, h in zip(accounts, base, head, strict=True):
        c.add(account, b, h)
    return c.report()
