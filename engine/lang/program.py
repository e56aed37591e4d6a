"""The compiled forms: what the compiler produces and the runtime evaluates.

A :class:`Compiled` ruleset holds one :class:`Program` for the account (and one for the
portfolio, if the ruleset has a portfolio section). A program is plain compiled data and
the Kleene closures of its conditions; it carries no runtime state (the runtime keeps its
evaluation plan and its engine rulesets beside it, in `engine.runtime`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import Diagnostic
from engine.lang import expr as E
from engine.lang.model import FactDecl, RuleDecl, RulesetDoc
from engine.lang.source import Source

OUTCOME_VARS: dict[str, str] = {
    "score": "number",
    "required_not_met": "number",
    "required_not_evaluable": "number",
    "required_not_met_rules": "list",
    "required_not_evaluable_rules": "list",
    "segments": "list",
    "qualification": "enum",
    "stage": "enum",
}
PRODUCED_BY = {
    "score": "criterion",
    "required_not_met": "criterion",
    "required_not_evaluable": "criterion",
    "required_not_met_rules": "criterion",
    "required_not_evaluable_rules": "criterion",
    "segments": "segment",
    "stage": "stage",
    "qualification": "decision",
}
RESERVED = set(E.FUNCTIONS) | set(E.KEYWORDS) | set(OUTCOME_VARS) | {"id", "sid", "kaq_stage"}


# --------------------------------------------------------------------------- compiled forms


@dataclass
class Slot:
    """A value the engine compares: a name's value, or a computed (hoisted) expression."""

    field: str
    level: int
    name: str | None = None  # a fact / derived / outcome name
    node: E.Node | None = None  # a hoisted expression
    diff: tuple[E.Node, E.Node] | None = None  # rnd(rnd(a) - rnd(b)) for a op b
    type: E.Type = E.NUMBER


@dataclass
class EngineRule:
    name: str
    level: int
    cond: dict[str, Any]
    node: E.Node
    positive: bool
    owner: str  # rule id, or "decision.<n>"
    role: str  # pos / ppos / esc<i> / step


@dataclass
class RulePart:
    """One part of a guardrail's condition: fires the rule when it holds, with its texts."""

    id: str
    node: E.Node  # the part's condition, guarded by the rule's applies_when
    scope: str  # "company" when every fact it reads is a company fact, else "account"
    message: dict[str, str] | None = None
    recommendation: dict[str, str] | None = None
    fn: Any = None  # the Kleene closure


@dataclass
class PlaybookEntry:
    """A playbook item: its text, and the condition that shows it done (None: never shown)."""

    text: dict[str, str]
    done: E.Node | None = None
    done_fn: Any = None


@dataclass
class Rule:
    id: str
    kind: str
    index: int
    decl: RuleDecl
    level: int = 1
    cond: E.Node = None  # type: ignore[assignment]
    partly: E.Node | None = None
    escalations: list[tuple[str, E.Node]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)  # fact / derived / outcome names, in order
    params: list[str] = field(default_factory=list)
    input_deps: list[str] = field(default_factory=list)
    esc_input_deps: list[list[str]] = field(default_factory=list)  # per escalation level
    comparisons: list[E.Node] = field(default_factory=list)
    weight: float = 0.0
    engine: dict[str, str] = field(default_factory=dict)  # role -> engine rule name
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    recommendation: dict[str, str] | None = None
    playbook: list[PlaybookEntry] = field(default_factory=list)
    parts: list[RulePart] = field(default_factory=list)
    # per escalation level: (message, recommendation), replacing the rule's at that severity
    esc_texts: list[tuple[dict[str, str] | None, dict[str, str] | None]] = field(
        default_factory=list
    )
    scope: str = "account"  # of a rule without parts: from the facts its condition reads
    # built after type-checking: closures for the explanation side
    cond_fn: Any = None
    partly_fn: Any = None
    esc_fns: list[Any] = field(default_factory=list)
    records_fn: Any = None  # env -> the trace records of `comparisons` (None: no comparisons)


@dataclass
class Step:
    index: int
    node: E.Node | None
    qualification: str
    reason: dict[str, str] | None
    level: int = 1
    engine: str | None = None
    fn: Any = None


@dataclass
class Derived:
    name: str
    node: E.Node
    unit: str | None
    input_deps: list[str]
    fn: Any = None


@dataclass
class Program:
    """A compiled set of rules over one set of facts (the account, or the portfolio)."""

    facts: dict[str, FactDecl]
    params: dict[str, Any]
    units: dict[str, str | None]
    # name -> lang -> (the word after 1, after other numbers): `unit_word`, `{name:word}`
    words: dict[str, dict[str, tuple[str, str]]]
    derived: list[Derived]
    rules: list[Rule]
    steps: list[Step]
    levels: list[int]
    engine_rules: dict[str, EngineRule]
    slots: dict[str, Slot]  # field -> slot
    level_fields: dict[int, list[Slot]]
    var_level: dict[str, int]  # outcome variable -> level after which it is known
    atom_count: int
    rules_by_level: dict[int, list[Rule]] = field(default_factory=dict)
    rules_of_kind: dict[str, list[Rule]] = field(default_factory=dict)
    step_levels: set[int] = field(default_factory=set)


@dataclass
class Compiled:
    doc: RulesetDoc
    source: Source
    program: Program
    portfolio: Program | None
    labels: dict[str, dict[str, dict[str, str]]]
    digest: str
    missing: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
