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


class Finding(_Open):
    rule: str
    severity: Severity
    message: Bilingual | None = None
    recommendation: Bilingual | None = None
    facts: dict[str, Any] = {}


class Recommendation(_Open):
    rule: str
    message: Bilingual


class TraceEntry(_Open):
    rule: str
    outcome: Literal["fired", "not_fired", "not_evaluable"]
    facts: dict[str, Any] = {}


class Verdict(_Open):
    """One account's verdict, as stored in the decision log."""

    decision_id: str = Field(description="Unique, sortable by time (ULID).")
    account_id: str | None
    ruleset: RulesetRef
    qualification: str
    score: float
    segments: list[str]
    stage: str | None
    criteria: list[Criterion]
    guardrails: list[Finding]
    recommendations: list[Recommendation]
    missing_facts: list[str]
    trace: list[TraceEntry]


class BatchError(_Open):
    """An account of a batch that could not be evaluated, in its place."""

    index: int
    account_id: str | None
    error: Problem


class BatchResponse(_Open):
    results: list[Verdict | BatchError]


class PortfolioCounts(_Open):
    qualification: dict[str, int]
    segments: dict[str, int]
    stage: dict[str, int]


class PortfolioResponse(_Open):
    results: list[Verdict]
    findings: list[Finding]
    counts: PortfolioCounts
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
    facts: dict[str, Any]
    verdict: dict[str, Any]


class Health(_Open):
    status: Literal["ok"]


class Readiness(_Open):
    status: Literal["ready"]
    rulesets: int
    generation: int
    decision_log: str
