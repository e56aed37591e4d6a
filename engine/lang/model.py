"""The shape of a ruleset file, as pydantic models (stage "check shape" of the compiler)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.limits import MAX_MAGNITUDE

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
RULESET_NAME_PATTERN = r"^[a-z][a-z0-9-]*$"

# percentile: a rank among customers, 0 = the top ("in the top 5%", "in the bottom half")
Unit = Literal["money", "percent", "percentile", "ratio", "years", "count", "points", "account"]
Scope = Literal["account", "company"]
Severity = Literal["info", "warning", "high"]
SEVERITIES = ("info", "warning", "high")  # lowest first: the one severity order
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
Kind = Literal["criterion", "segment", "stage", "guardrail"]
CRITERION_OUTCOMES = ("met", "partly_met", "not_met", "not_evaluable")
RULE_OUTCOMES = ("fired", "not_fired", "not_evaluable")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """A text in English and Chinese."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


# units that print a word of their own ("¥3万", "5%", "前5%", "3年", "2个客户"): no second one
_WORDED_UNITS = ("money", "percent", "percentile", "years", "account")


class UnitWord(_Strict):
    """The word written after a number of a fact (policy §8: amounts with their unit).

    `zh` is the measure word (量词) or unit: 「3次」「2家」「50万套」. `en` is the English
    singular, written after 1 ("1 unit"); after any other number `en_plural` ("0 units",
    "1,200 units"), which is `en` made plural by rule when not given (unit → units,
    box → boxes, facility → facilities). Either language may be left out: an English
    label often names the thing already ("executive meetings per year: 2").
    """

    en: str | None = Field(default=None, min_length=1, max_length=40)
    en_plural: str | None = Field(default=None, min_length=1, max_length=40)
    zh: str | None = Field(default=None, min_length=1, max_length=40)

    @field_validator("en", "en_plural", "zh")
    @classmethod
    def _one_word(cls, v: str | None) -> str | None:
        # kaq writes the space between number and word ("3 units", 「3次」): none in the word
        if v is not None and (v != v.strip() or any(c in v for c in "{}\n")):
            raise ValueError(
                "write the word alone, without spaces around it, braces or line breaks"
            )
        return v

    @model_validator(mode="after")
    def _some_word(self) -> UnitWord:
        if self.en is None and self.zh is None:
            raise ValueError("give the word in `en`, `zh` or both")
        if self.en_plural is not None and self.en is None:
            raise ValueError("`en_plural` needs `en`, the word after 1")
        return self

    def forms(self) -> dict[str, tuple[str, str]]:
        """lang -> (the word after 1, the word after any other number)."""
        out: dict[str, tuple[str, str]] = {}
        if self.en is not None:
            out["en"] = (self.en, self.en_plural or plural(self.en))
        if self.zh is not None:
            out["zh"] = (self.zh, self.zh)
        return out


def plural(word: str) -> str:
    """The regular English plural of a noun (its last word): unit → units, box → boxes,
    branch → branches, facility → facilities. Irregular ones are `en_plural`."""
    low = word.lower()
    if low.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if low.endswith("y") and low[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return word[:-1] + "ies"
    return word + "s"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _word_fits(word: UnitWord | None, unit: str | None, number: bool | None) -> None:
    """A unit word goes with a number whose unit writes no word of its own."""
    if word is None:
        return
    if number is False:
        raise ValueError("`unit_word` only applies to numbers (integer and number values)")
    if unit in _WORDED_UNITS:
        raise ValueError(
            f"`unit_word` does not go with `unit: {unit}`, which writes its own word; "
            "give it to a count or to a number without a unit"
        )


class FactDecl(_Strict):
    type: Literal["string", "integer", "number", "boolean", "enum", "list"]
    label: Text | None = None  # its short name for people ("purchase pattern", "采购方式")
    required: bool = False
    values: list[str] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(default=None, ge=1, le=100_000)
    unit: Unit | None = None
    # the word after a number of it (「3次」, "1,200 units"): {en: unit, zh: 套}
    unit_word: UnitWord | None = None
    description: Text | None = None
    labels: dict[str, Text] | None = None  # how enum / list values read in messages
    missing: Text | None = None  # what messages say when the fact is unknown
    # a fact the account's team can change (what it would take tries changing it)
    actionable: bool = False
    # a fact about our company, not the account: findings only it made fire are company's
    scope: Scope = "account"

    @field_validator("unit_word")
    @classmethod
    def _unit_word_fits(cls, v: UnitWord | None, info: ValidationInfo) -> UnitWord | None:
        t = info.data.get("type")
        _word_fits(v, info.data.get("unit"), None if t is None else t in ("integer", "number"))
        return v

    @model_validator(mode="after")
    def _values_fit_type(self) -> FactDecl:
        if self.type in ("enum", "list"):
            if not self.values:
                raise ValueError(f"a fact of type {self.type} needs `values`")
            if len(set(self.values)) != len(self.values):
                raise ValueError("`values` has duplicates")
        elif self.values is not None:
            raise ValueError(f"`values` only applies to enum and list facts, not {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError("`min` / `max` only apply to integer and number facts")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` is greater than `max`")
        if self.max_length is not None and self.type != "string":
            raise ValueError("`max_length` only applies to string facts")
        if self.labels is not None:
            if self.type not in ("enum", "list", "string"):
                raise ValueError("`labels` only apply to enum, list and string facts")
            # a free-text fact may label the values it commonly takes; others print as sent
            unknown = [
                k for k in self.labels if self.type != "string" and k not in (self.values or [])
            ]
            if unknown:
                raise ValueError(
                    f"`labels` names values the fact cannot take: {', '.join(unknown)}"
                )
        return self


class ParamDecl(_Strict):
    value: bool | int | float | str | list[str]
    unit: Unit | None = None
    unit_word: UnitWord | None = None
    description: Text | None = None

    @field_validator("unit_word")
    @classmethod
    def _unit_word_fits(cls, v: UnitWord | None, info: ValidationInfo) -> UnitWord | None:
        value = info.data.get("value")
        number = None if "value" not in info.data else _is_number(value)
        _word_fits(v, info.data.get("unit"), number)
        return v

    @field_validator("value")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            raise ValueError("a param must be a finite number")
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > MAX_MAGNITUDE:
            raise ValueError(
                f"a param must be between -{MAX_MAGNITUDE:.0e} and {MAX_MAGNITUDE:.0e}"
            )
        return v


class DerivedDecl(_Strict):
    expr: str
    unit: Unit | None = None
    unit_word: UnitWord | None = None  # its type is known after "check": see the compiler
    description: Text | None = None
    missing: Text | None = None  # what messages say when it is unknown (e.g. a division by 0)

    @field_validator("unit_word")
    @classmethod
    def _unit_word_fits(cls, v: UnitWord | None, info: ValidationInfo) -> UnitWord | None:
        _word_fits(v, info.data.get("unit"), None)
        return v


class Escalation(_Strict):
    severity: Severity
    when: str
    # when this level is the finding's severity, its texts replace the rule's own
    message: Text | None = None
    recommendation: Text | None = None


class Part(_Strict):
    """One part (a disjunct) of a guardrail's condition, with the texts said when it holds."""

    id: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=64)
    when: str
    message: Text | None = None
    recommendation: Text | None = None


class PlaybookItem(_Strict):
    """One playbook item: its text, and the condition that shows it is done already."""

    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)
    done_when: str | None = None


class RuleDecl(_Strict):
    id: str = Field(pattern=RULE_ID_PATTERN, max_length=120)
    kind: Kind
    label: Text | None = None  # a short name, e.g. in "required criteria not met: ..."
    description: Text | None = None
    segment: str | None = None
    stage: str | None = None
    weight: float | str | None = None
    required: bool = False
    applies_when: str | None = None
    when: str | None = None  # a guardrail with `parts` fires when any part holds
    parts: list[Part] = []
    partly_when: str | None = None
    severity: Severity | None = None
    escalate: list[Escalation] = []
    # a plain {en, zh} is the message when the rule fires; or one per outcome
    message: Text | dict[str, Text] | None = None
    recommendation: Text | None = None
    playbook: list[PlaybookItem] = []

    @model_validator(mode="after")
    def _keys_fit_kind(self) -> RuleDecl:
        k = self.kind
        allowed_outcomes = CRITERION_OUTCOMES + ("fired",) if k == "criterion" else RULE_OUTCOMES
        for key in self.message if isinstance(self.message, dict) else ():
            if key not in allowed_outcomes:
                raise ValueError(
                    f"message key `{key}` does not fit a {k}; "
                    f"use one of {', '.join(allowed_outcomes)}"
                )

        def only(field: str, kinds: tuple[str, ...]) -> None:
            v = getattr(self, field)
            if v not in (None, [], False) and k not in kinds:
                raise ValueError(f"`{field}` does not apply to a {k} rule")

        only("weight", ("criterion",))
        only("required", ("criterion",))
        only("partly_when", ("criterion",))
        only("segment", ("segment",))
        only("stage", ("stage",))
        only("playbook", ("stage",))
        only("severity", ("guardrail",))
        only("escalate", ("guardrail",))
        only("recommendation", ("guardrail",))
        only("parts", ("guardrail",))
        if self.parts and self.when is not None:
            raise ValueError(
                "give either `when` or `parts` (the rule fires when any part holds), not both"
            )
        if not self.parts and self.when is None:
            raise ValueError("a rule needs a `when` (or, for a guardrail, `parts`)")
        ids = [p.id for p in self.parts if p.id is not None]
        if len(set(ids)) != len(ids):
            raise ValueError("part ids must be unique within a rule")
        if k == "criterion" and self.weight is None:
            raise ValueError("a criterion needs a `weight` (a number or a param name)")
        if k == "segment" and not self.segment:
            raise ValueError("a segment rule needs `segment`")
        if k == "stage" and not self.stage:
            raise ValueError("a stage rule needs `stage`")
        if k == "guardrail" and not self.severity:
            raise ValueError("a guardrail needs a `severity` (info, warning or high)")
        return self


class AdviceDecl(_Strict):
    """What a verdict advises (policy §8), in the ruleset's own vocabulary."""

    # qualifications from lowest to highest: "a step up" is the next one in this list
    ladder: list[str] = Field(min_length=2)
    # the qualifications whose accounts get their stage's playbook
    playbook_for: list[str] = []
    # the one recommendation for an account of a qualification (e.g. not a key account)
    recommendations: dict[str, Text] = {}
    max_paths: int = Field(default=3, ge=0, le=10)
    max_changes: int = Field(default=2, ge=1, le=3)
    max_next_actions: int = Field(default=3, ge=0, le=10)


class DecisionStep(_Strict):
    when: str | None = None
    qualification: str
    reason: Text | None = None


class Decision(_Strict):
    steps: list[DecisionStep] = Field(min_length=1)


#: The portfolio metrics kaq computes (engine/runtime/portfolio.py), which the ruleset's
#: portfolio rules may read; any other portfolio fact is an input the caller gives.
PORTFOLIO_METRICS = (
    "account_count",
    "known_profit_count",
    "top_count",
    "top_profit_share_pct",
    "max_revenue_share_pct",
    "largest_account_name",
    "hhi",
    "smb_revenue_share_pct",
    "unqualified_top_profit_count",
)


class PortfolioDecl(_Strict):
    """The portfolio view: which account facts measure revenue and margin, which
    qualifications are the small and mid-size customers, and rules over the metrics."""

    revenue: str  # a number fact: an account's revenue (missing counts as 0)
    margin_pct: str  # a number fact: the margin in percent (profit = revenue × margin / 100)
    smb: list[str] = Field(min_length=1)  # qualifications that are SMB customers
    # qualifications a top-profit account should not have (they are named in findings)
    unqualified: list[str] = []
    # the portfolio input `kaq portfolio --smb-dropped PCT` gives
    smb_dropped: str | None = None
    facts: dict[str, FactDecl] = {}  # the metrics kaq computes, and inputs callers give
    params: dict[str, ParamDecl] = {}
    rules: list[RuleDecl] = []


class RulesetDoc(_Strict):
    kaq: Literal[1]
    name: str = Field(pattern=RULESET_NAME_PATTERN, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    description: Text | None = None
    currency: str = "CNY"
    qualifications: dict[str, Text] = Field(min_length=1)
    segments: dict[str, Text] = {}
    stages: dict[str, Text] = {}
    facts: dict[str, FactDecl] = Field(min_length=1)
    params: dict[str, ParamDecl] = {}
    derived: dict[str, DerivedDecl] = {}
    rules: list[RuleDecl] = Field(min_length=1, max_length=300)
    decision: Decision
    advice: AdviceDecl | None = None
    portfolio: PortfolioDecl | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v
