"""Rule coverage of a ruleset's test cases, measured from the verdicts' traces.

Two measures, both from the `trace` of every verdict the cases produced (a case that
failed its `want` still counts: it ran):

* **fire / not-fire coverage**, the one ``kaq test --coverage-min`` applies to. A rule is
  *covered* when some case made it ``fired`` and some case made it ``not_fired``;
  *partial* when only one of the two was seen; *uncovered* when neither was (no case,
  or only ``not_evaluable`` outcomes). ``not_evaluable`` is counted and reported, not
  required. Percent = covered rules / all rules of the ruleset; a ruleset without cases
  is 0 %.
* **threshold coverage** (reported only). Each comparison against a param (a trace
  comparison with ``param`` set), keyed by rule, expression and param, is *covered* when
  cases put it on both sides: ``result`` true seen and ``result`` false seen (``null``,
  a missing operand, is counted apart). Comparisons are discovered from traces, so a
  comparison that no case ever reached does not show up here.

Percentages are rounded to one decimal before they are compared with a minimum, so the
66.7 % people read is the number ``--coverage-min 66.7`` is held to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COVERED, PARTIAL, UNCOVERED = "covered", "partial", "uncovered"


def percent(part: int, whole: int) -> float:
    """`part / whole` in percent, one decimal; 0 of 0 is 100 (nothing to cover)."""
    return 100.0 if whole == 0 else round(100.0 * part / whole, 1)


@dataclass
class RuleCoverage:
    """How often cases made one rule fire, not fire, or left it not evaluable."""

    rule: str
    kind: str
    fired: int = 0
    not_fired: int = 0
    not_evaluable: int = 0

    @property
    def status(self) -> str:
        if self.fired and self.not_fired:
            return COVERED
        return PARTIAL if self.fired or self.not_fired else UNCOVERED

    @property
    def missing(self) -> list[str]:
        """The sides no case has reached: `fired`, `not_fired`."""
        return [side for side in ("fired", "not_fired") if not getattr(self, side)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "fired": self.fired,
            "not_fired": self.not_fired,
            "not_evaluable": self.not_evaluable,
            "status": self.status,
            "missing": self.missing,
        }


@dataclass
class ThresholdCoverage:
    """Which sides of one param comparison the cases reached."""

    rule: str
    expr: str
    param: str
    true: int = 0
    false: int = 0
    unknown: int = 0

    @property
    def covered(self) -> bool:
        return bool(self.true and self.false)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "expr": self.expr,
            "param": self.param,
            "true": self.true,
            "false": self.false,
            "unknown": self.unknown,
            "covered": self.covered,
        }


@dataclass
class RulesetCoverage:
    """Coverage of one ruleset by its cases."""

    ruleset: str
    rules: list[RuleCoverage]
    thresholds: list[ThresholdCoverage] = field(default_factory=list)
    cases: int = 0

    @property
    def covered(self) -> list[RuleCoverage]:
        return [r for r in self.rules if r.status == COVERED]

    @property
    def partial(self) -> list[RuleCoverage]:
        return [r for r in self.rules if r.status == PARTIAL]

    @property
    def uncovered(self) -> list[RuleCoverage]:
        return [r for r in self.rules if r.status == UNCOVERED]

    @property
    def incomplete(self) -> list[RuleCoverage]:
        """Rules missing a side, in ruleset order."""
        return [r for r in self.rules if r.status != COVERED]

    @property
    def percent(self) -> float:
        if not self.cases:
            return 0.0
        return percent(len(self.covered), len(self.rules))

    @property
    def threshold_percent(self) -> float:
        return percent(sum(1 for t in self.thresholds if t.covered), len(self.thresholds))

    def meets(self, minimum: float | None) -> bool:
        return minimum is None or self.percent >= minimum

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleset": self.ruleset,
            "cases": self.cases,
            "rules": len(self.rules),
            "covered": len(self.covered),
            "partial": len(self.partial),
            "uncovered": len(self.uncovered),
            "percent": self.percent,
            "per_rule": [r.to_dict() for r in self.rules],
            "thresholds": {
                "total": len(self.thresholds),
                "covered": sum(1 for t in self.thresholds if t.covered),
                "percent": self.threshold_percent,
                "items": [t.to_dict() for t in self.thresholds],
            },
        }


def measure(
    ruleset: str, rules: Sequence[tuple[str, str]], verdicts: Iterable[Mapping[str, Any]]
) -> RulesetCoverage:
    """Coverage of `rules` ((id, kind) in ruleset order) by the traces of `verdicts`.

    >>> cov = measure("demo", [("a", "segment")], [{"trace": [{"rule": "a", "outcome": "fired"}]}])
    >>> cov.percent, cov.rules[0].status
    (0.0, 'partial')
    """
    by_id = {rule: RuleCoverage(rule, kind) for rule, kind in rules}
    thresholds: dict[tuple[str, str, str], ThresholdCoverage] = {}
    cases = 0
    for verdict in verdicts:
        cases += 1
        for entry in verdict.get("trace") or []:
            rule = str(entry.get("rule"))
            cov = by_id.get(rule)
            if cov is None:  # a rule the ruleset does not list; keep it visible
                cov = by_id[rule] = RuleCoverage(rule, str(entry.get("kind", "")))
            outcome = entry.get("outcome")
            if outcome in ("fired", "not_fired", "not_evaluable"):
                setattr(cov, outcome, getattr(cov, outcome) + 1)
            for comparison in entry.get("comparisons") or []:
                param = comparison.get("param")
                if not param:
                    continue
                key = (rule, str(comparison.get("expr")), str(param))
                t = thresholds.get(key)
                if t is None:
                    t = thresholds[key] = ThresholdCoverage(*key)
                result = comparison.get("result")
                if result is True:
                    t.true += 1
                elif result is False:
                    t.false += 1
                else:
                    t.unknown += 1
    order = {rule: i for i, rule in enumerate(by_id)}
    return RulesetCoverage(
        ruleset=ruleset,
        rules=list(by_id.values()),
        thresholds=sorted(thresholds.values(), key=lambda t: (order[t.rule], t.expr, t.param)),
        cases=cases,
    )


def rule_list(rs: Any) -> list[tuple[str, str]]:
    """(id, kind) of a prepared ruleset's rules, in ruleset order."""
    return [(str(r.id), str(r.kind)) for r in rs.rules]


__all__ = [
    "COVERED",
    "PARTIAL",
    "UNCOVERED",
    "RuleCoverage",
    "RulesetCoverage",
    "ThresholdCoverage",
    "measure",
    "percent",
    "rule_list",
]
