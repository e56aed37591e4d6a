"""The portfolio view (policy §7): figures over many accounts, judged by the ruleset.

`evaluate_portfolio(rs, accounts, portfolio)` evaluates every account, computes
the portfolio metrics from the facts and the verdicts, and lets the ruleset's
`portfolio.rules` decide the findings (`rs.evaluate_portfolio_metrics`). The
thresholds are the ruleset's portfolio params; nothing here decides a finding.

Definitions (policy §7). The ruleset's `portfolio` section names the facts and the
qualifications they are made of (for the default ruleset: `revenue: annual_spend`,
`margin_pct: gross_margin_pct`, `smb: [not_key_account]`); no policy name is written here.

- revenue = the `revenue` fact (missing counts as 0); profit = revenue × `margin_pct` /
  100, known only when both are known;
- top accounts = the `max(1, ceil(top_fraction × n))` accounts with the highest
  known profit (n = accounts with a known profit; ties by `account_id`);
  `top_profit_share_pct` is unknown when the total known profit is ≤ 0;
- shares and the HHI (sum of squared shares in %, 0–10,000) are unknown when the
  total revenue is 0, so no concentration finding can fire;
- SMB = a verdict whose qualification is one of `smb`.
- Portfolio facts that are not metrics computed here are inputs the caller gives
  (`"portfolio": {"smb_accounts_dropped_pct": 12}` for the default ruleset).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from engine.errors import FactsError
from engine.lang.model import FactDecl
from engine.limits import MAX_MAGNITUDE

#: The metrics computed here, which the ruleset's portfolio rules may read.
METRIC_NAMES = (
    "account_count",
    "top_profit_share_pct",
    "max_revenue_share_pct",
    "hhi",
    "smb_revenue_share_pct",
)

DEFAULT_TOP_FRACTION = 0.2
_DECIMALS = 6


def evaluate_portfolio(
    rs: Any, accounts: Sequence[Mapping[str, Any]], portfolio: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Verdicts, findings, counts and metrics of a portfolio; FactsError lists every bad input.

    Example::

        out = evaluate_portfolio(rs, [{"account_id": "A", "annual_spend": 5e6}], None)
        out["findings"], out["counts"]["qualification"]
    """
    port = rs.compiled.doc.portfolio
    if port is None:
        raise FactsError(
            [{"loc": [], "msg": f"ruleset {rs.name} has no portfolio section", "type": "portfolio"}]
        )
    declared = rs.portfolio_program.facts if rs.portfolio_program is not None else {}
    inputs = _portfolio_inputs(
        portfolio, {n: d for n, d in declared.items() if n not in METRIC_NAMES}
    )
    errors: list[dict[str, Any]] = []
    facts: list[dict[str, Any]] = []
    for i, raw in enumerate(accounts):
        try:
            facts.append(rs.validate_facts(raw))
        except FactsError as exc:
            errors.extend({**e, "loc": ["accounts", i, *e["loc"]]} for e in exc.errors)
    if errors:
        raise FactsError(errors)
    verdicts = [rs.evaluate_valid(f) for f in facts]
    params = rs.portfolio_params
    top_fraction = params.get("top_fraction", DEFAULT_TOP_FRACTION)
    metrics = portfolio_metrics(
        facts,
        verdicts,
        revenue=port.revenue,
        margin_pct=port.margin_pct,
        smb=port.smb,
        top_fraction=top_fraction,
    )
    metrics.update(inputs)
    findings = rs.evaluate_portfolio_metrics({k: metrics[k] for k in declared if k in metrics})
    return {
        "results": verdicts,
        "findings": findings,
        "counts": portfolio_counts(verdicts),
        "metrics": metrics,
    }


def _portfolio_inputs(
    portfolio: Mapping[str, Any] | None, decls: Mapping[str, FactDecl]
) -> dict[str, Any]:
    """The caller's portfolio inputs, checked against their declarations (the others None)."""
    out: dict[str, Any] = dict.fromkeys(decls)
    if portfolio is None:
        return out
    if not isinstance(portfolio, Mapping):
        raise FactsError([{"loc": ["portfolio"], "msg": "must be an object", "type": "dict_type"}])
    errors = []
    for key, value in portfolio.items():
        loc = ["portfolio", key]
        decl = decls.get(key)
        if decl is None:
            errors.append({"loc": loc, "msg": "unknown portfolio input", "type": "extra_forbidden"})
            continue
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append({"loc": loc, "msg": "must be a number", "type": "float_type"})
            continue
        lo = decl.min if decl.min is not None else -MAX_MAGNITUDE
        hi = decl.max if decl.max is not None else MAX_MAGNITUDE
        if not math.isfinite(value) or not lo <= value <= hi:
            errors.append(
                {"loc": loc, "msg": f"must be between {lo:g} and {hi:g}", "type": "range"}
            )
        else:
            out[key] = value
    if errors:
        raise FactsError(errors)
    return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, _DECIMALS)


def portfolio_metrics(
    facts: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Mapping[str, Any]],
    *,
    revenue: str,
    margin_pct: str,
    smb: Sequence[str],
    top_fraction: float = DEFAULT_TOP_FRACTION,
) -> dict[str, Any]:
    """The §7 figures of validated facts and their verdicts (same order); unknowns are None.

    `revenue` and `margin_pct` name the facts, `smb` the qualifications of SMB customers.
    """
    revenues = [_num(f.get(revenue)) or 0.0 for f in facts]
    total_revenue = sum(revenues)
    known_profits: list[tuple[float, str]] = []
    for f in facts:
        spend, margin = _num(f.get(revenue)), _num(f.get(margin_pct))
        if spend is not None and margin is not None:
            known_profits.append((spend * margin / 100, str(f.get("account_id", ""))))
    total_known_profit = sum(p for p, _ in known_profits)

    top_count = 0
    top_share = None
    if known_profits:
        # Decimal: 0.2 × 15 is 3.0000000000000004 in floats, and ceil would make it 4.
        top_count = max(1, math.ceil(Decimal(repr(float(top_fraction))) * len(known_profits)))
        if total_known_profit > 0:
            ranked = sorted(known_profits, key=lambda pa: (-pa[0], pa[1]))
            top_share = sum(p for p, _ in ranked[:top_count]) / total_known_profit * 100

    max_share = hhi = smb_share = None
    if total_revenue > 0:
        shares = [r / total_revenue * 100 for r in revenues]
        max_share = max(shares)
        hhi = sum(s * s for s in shares)
        smb_revenue = sum(
            r for r, v in zip(revenues, verdicts, strict=True) if v.get("qualification") in smb
        )
        smb_share = smb_revenue / total_revenue * 100

    return {
        "account_count": len(facts),
        "top_profit_share_pct": _round(top_share),
        "max_revenue_share_pct": _round(max_share),
        "hhi": _round(hhi),
        "smb_revenue_share_pct": _round(smb_share),
        "total_revenue": _round(total_revenue),
        "total_known_profit": _round(total_known_profit) if known_profits else None,
        "known_profit_count": len(known_profits),
        "top_count": top_count,
        "smb_count": sum(1 for v in verdicts if v.get("qualification") in smb),
    }


def portfolio_counts(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Accounts per qualification, per segment and per stage (`unknown` for no stage)."""
    qualification = Counter(str(v.get("qualification")) for v in verdicts)
    segments = Counter(s for v in verdicts for s in (v.get("segments") or ()))
    stage = Counter(v.get("stage") or "unknown" for v in verdicts)
    return {
        "qualification": dict(sorted(qualification.items())),
        "segments": dict(sorted(segments.items())),
        "stage": dict(sorted(stage.items())),
    }
