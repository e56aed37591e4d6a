"""Response shapes, for the OpenAPI document (responses are built as plain data).

They describe what the engine returns (docs/engine-api.md) without restating
its logic; `extra="allow"` keeps additions by the engine valid.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.lang.model import Severity

Bilingual = dict[str, str]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProblemDetail(_Open):
    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(_Open):
    """An RFC 9457 problem (application/problem+json)."""

    type: str = Field(examples=["urn:kaq:problem:invalid-facts"])
    title: str
    status: int
    detail: str
    errors: list[ProblemDetail] | None = None


class RulesetRef(_Open):
    name: str
    version: str
    digest: str


class Criterion(_Open):
    rule: str
    outcome: Literal["met", "partly_met", "not_met", "not_evaluable"]
    points: float | None = None
    max_points: float | None = None
    message: Bilingual | None = None
    facts: dict[str, Any] = {}


class FindingPart(_Open):
    part: str
    scope: Literal["account", "company"]
    message: Bilingual | None = None
    recommendation: Bilingual | None = None


class Finding(_Open):
    rule: str
    severity: Severity
    scope: Literal["account", "company"] = Field(
        description="`company` when only facts about our company made it fire (policy §6)."
    )
    message: Bilingual | None = None
    recommendation: Bilingual | None = None
    facts: dict[str, Any] = {}
    parts: list[FindingPart] | None = Field(
        default=None, description="The parts of its condition that hold, each with its texts."
    )


class Change(_Open):
    fact: str
    to: Any = Field(alias="to")
    from_: Any = Field(default=None, alias="from")


class PathUp(_Open):
    """One way up (policy §8): apply the changes and evaluate again to get exactly this."""

    changes: list[Change]
    qualification: str
    score: float
    message: Bilingual


class NextAction(_Open):
    rule: str
    message: Bilingual


class Recommendation(_Open):
    rule: str
    message: Bilingual


class TraceEntry(_Open):
    rule: str
    outcome: Literal["fired", "not_fired", "not_evaluable"]
    facts: dict[str, Any] = {}


class Decision(_Open):
    """The `decision` view: the decision alone, no texts (also the start of every view)."""

    decision_id: str = Field(description="Unique, sortable by time (ULID).")
    account_id: str | None
    ruleset: RulesetRef
    qualification: str
    score: float
    segments: list[str]
    stage: str | None
    missing_facts: list[str]


class DecisionView(Decision):
    outcomes: dict[str, str] = Field(
        description="Rule id -> met/partly_met/not_met/not_evaluable (criteria), "
        "fired/not_fired/not_evaluable (the others)."
    )
    points: dict[str, float]
    severities: dict[str, Severity]
    scopes: dict[str, Literal["account", "company"]] = {}


class Summary(Decision):
    """The `summary` view: everything but the trace, the comparisons and criteria facts."""

    criteria: list[Criterion]
    guardrails: list[Finding]
    recommendations: list[Recommendation]
    what_it_would_take: list[PathUp] = []
    decisive_missing_facts: list[str] = []
    next_actions: list[NextAction] = []


class Verdict(Summary):
    """The `full` view (the default): a verdict with its explanation and trace."""

    trace: list[TraceEntry]


AnyView = Verdict | Summary | DecisionView


class BatchError(_Open):
    """An account of a batch that could not be evaluated, in its place."""

    index: int | None = Field(
        description="The item's position; null for a failure of an NDJSON stream itself."
    )
    account_id: str | None
    error: Problem


class BatchResponse(_Open):
    results: list[Verdict | Summary | DecisionView | BatchError]


class PortfolioCounts(_Open):
    unit: Literal["account"] = Field(description="What the counts count: accounts.")
    qualification: dict[str, int]
    segments: dict[str, int]
    stage: dict[str, int]


class QualificationTotal(_Open):
    accounts: int
    revenue: float = Field(description="Sum of the accounts' revenue, in `totals.currency`.")
    share_of_posted_revenue_pct: float | None
    profit: float | None = Field(description="Sum of the known profits (null: none known).")
    profit_known_accounts: int = Field(description="Accounts whose profit is known.")
    share_of_known_profit_pct: float | None


class PortfolioTotals(_Open):
    """Revenue and profit of the posted accounts, in all and per qualification (policy §7)."""

    currency: str
    accounts: int
    revenue: float
    profit: float | None
    qualification: dict[str, QualificationTotal]


class TopAccount(_Open):
    """One of the top accounts by profit, highest first."""

    account_id: str
    account_name: str | None
    qualification: str
    revenue: float
    profit: float | None
    share_of_known_profit_pct: float | None


class LargestAccount(_Open):
    """The account with the largest revenue among those posted."""

    account_id: str
    account_name: str | None
    qualification: str
    revenue: float
    share_of_posted_revenue_pct: float = Field(
        description="Its share of the revenue posted here; not its own `revenue_share_pct` "
        "(of company revenue)."
    )


class PortfolioResponse(_Open):
    results: list[Verdict]
    findings: list[Finding]
    counts: PortfolioCounts
    totals: PortfolioTotals
    top_accounts: list[TopAccount] = Field(
        description="The top accounts by profit (policy §7), highest profit first."
    )
    largest_account: LargestAccount | None = Field(description="Null when the posted revenue is 0.")
    metrics: dict[str, Any] = {}


class RulesetSummary(_Open):
    name: str
    version: str
    digest: str
    rules: int = Field(description="Number of rules.")
    loaded_at: str


class RulesetList(_Open):
    rulesets: list[RulesetSummary]
    generation: int
    loaded_at: str
    source: dict[str, Any] = {}  # kind, version, digest, who, note, published_at, served_by


class RulesetDetail(_Open):
    name: str
    version: str
    digest: str
    loaded_at: str
    facts_schema: dict[str, Any]


class ReloadResponse(_Open):
    generation: int
    rulesets: list[RulesetSummary]
    source: dict[str, Any] = {}  # the source and version now served (GET /v1/rulesets too)


class StoredDecision(_Open):
    decision_id: str
    created_at: str
    ruleset: RulesetRef
    account_id: str | None
    qualification: str | None
    duration_ms: float
    view: str = Field(description="The view it was answered in; `verdict` is the full one.")
    kaq_version: str | None = Field(description="The kaq that logged it (null: an old row).")
    facts: dict[str, Any]
    verdict: dict[str, Any] | None = Field(
        description="The full verdict, as it was answered; null (with `warning`) when the "
        "ruleset that decided it can no longer be prepared."
    )
    warning: str | None = Field(
        default=None,
        description="Present when the verdict could not be made again exactly as logged.",
    )


class Health(_Open):
    status: Literal["ok"]


class Readiness(_Open):
    status: Literal["ready"]
    rulesets: int
    generation: int
    decision_log: str
