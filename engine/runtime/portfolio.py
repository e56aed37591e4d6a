"""The portfolio view (policy §7): figures over many accounts, judged by the ruleset.

It streams. `Portfolio.add(facts, qualification, segments, stage)` takes one account at a
time and keeps, per account, 13 bytes (its profit, its position and its qualification, for
the ranking by profit); everything else is running sums. `finish(facts_of)` ranks, asks
`facts_of` for the facts of the few accounts it must name (the top accounts by profit and
the largest one: a second pass over a file, or a look into a list), and lets the ruleset's
`portfolio.rules` decide the findings (`rs.evaluate_portfolio_metrics`). The thresholds are
the ruleset's portfolio params; nothing here decides a finding.

Definitions (policy §7). The ruleset's `portfolio` section names the facts and the
qualifications they are made of (for the default ruleset: `revenue: annual_spend`,
`margin_pct: gross_margin_pct`, `smb: [not_key_account]`, `unqualified: [not_key_account,
insufficient_data]`, `smb_dropped: smb_accounts_dropped_pct`); no policy name is written here.

- revenue = the `revenue` fact (missing counts as 0); profit = revenue × `margin_pct` /
  100, known only when both are known;
- top accounts = the `max(1, ceil(top_fraction × n))` accounts with the highest
  known profit (n = accounts with a known profit; ties by `account_id`);
  `top_profit_share_pct` is unknown when the total known profit is ≤ 0;
- shares and the HHI (sum of squared shares in %, 0–10,000) are unknown when the
  total revenue is 0, so no concentration finding can fire;
- SMB = a verdict whose qualification is one of `smb`; an unqualified top account, one of
  the top accounts whose qualification is one of `unqualified`.
- Portfolio facts that are not metrics computed here are inputs the caller gives
  (`"portfolio": {"smb_accounts_dropped_pct": 12}` for the default ruleset).

A finding names the accounts of the metrics its rule reads: `top_profit_share_pct` the top
accounts (`top_account_ids`), `max_revenue_share_pct` the largest account
(`largest_account_id`, `share_of_posted_revenue_pct`: of the revenue posted here, not the
account's own share of company revenue), `unqualified_top_profit_count` the unqualified top
accounts (`account_ids`, and per account its qualification and first path up).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from engine.errors import FactsError
from engine.lang.model import PORTFOLIO_METRICS, FactDecl
from engine.limits import MAX_MAGNITUDE
from engine.runtime.render import format_value

#: The metrics computed here, which the ruleset's portfolio rules may read.
METRIC_NAMES = PORTFOLIO_METRICS

DEFAULT_TOP_FRACTION = 0.2
_DECIMALS = 6
_NAMED = 5  # accounts a message names before "and N more"

#: facts_of(positions) -> (position, validated facts) for those positions, in order
FactsOf = Callable[[Sequence[int]], Iterable[tuple[int, Mapping[str, Any]]]]


def evaluate_portfolio(
    rs: Any, accounts: Sequence[Mapping[str, Any]], portfolio: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Verdicts, findings, counts, totals and metrics of a portfolio; FactsError lists every
    bad input.

    Example::

        out = evaluate_portfolio(rs, [{"account_id": "A", "annual_spend": 5e6}], None)
        out["findings"], out["counts"]["qualification"], out["top_accounts"]
    """
    builder = Portfolio(rs, portfolio)
    errors: list[dict[str, Any]] = []
    facts: list[dict[str, Any]] = []
    for i, raw in enumerate(accounts):
        try:
            facts.append(rs.validate_facts(raw))
        except FactsError as exc:
            errors.extend({**e, "loc": ["accounts", i, *e["loc"]]} for e in exc.errors)
    if errors:
        raise FactsError(errors)
    verdicts = []
    for f in facts:
        d = rs.decide_valid(f)
        builder.add(f, d.qualification, d.segments, d.stage)
        verdicts.append(rs.explain(d))
    out = builder.finish(lambda positions: ((i, facts[i]) for i in positions))
    return {"results": verdicts, **out}


class Portfolio:
    """The portfolio of one ruleset, built one account at a time (memory: 13 bytes an
    account, plus the accounts it names)."""

    def __init__(self, rs: Any, portfolio: Mapping[str, Any] | None = None):
        port = rs.compiled.doc.portfolio
        if port is None:
            raise FactsError(
                [
                    {
                        "loc": [],
                        "msg": f"ruleset {rs.name} has no portfolio section",
                        "type": "portfolio",
                    }
                ]
            )
        self.rs, self.port = rs, port
        self.declared = rs.portfolio_program.facts if rs.portfolio_program is not None else {}
        self.inputs = _portfolio_inputs(
            portfolio, {n: d for n, d in self.declared.items() if n not in METRIC_NAMES}
        )
        self.top_fraction = rs.portfolio_params.get("top_fraction", DEFAULT_TOP_FRACTION)
        self.sums = _Sums(port.revenue, port.margin_pct, port.smb)
        self.unqualified = set(port.unqualified)

    def add(self, facts: Mapping[str, Any], qualification: Any, segments: Any, stage: Any) -> None:
        """One account's validated facts and decision."""
        self.sums.add(facts, qualification, segments, stage)

    def finish(self, facts_of: FactsOf) -> dict[str, Any]:
        """Findings, counts, totals, top accounts, largest account and metrics."""
        s = self.sums
        top = s.top_positions(self.top_fraction)
        wanted = sorted(set(top) | ({s.largest[1]} if s.largest is not None else set()))
        rows: dict[int, dict[str, Any]] = {}
        # the first step up of each unqualified top account, worked out as its facts pass
        # (holding the facts of thousands of accounts until the ranking is done would not
        # be bounded); the few tied at the cut and ranked out are dropped afterwards
        unqualified_rows: dict[int, dict[str, Any]] = {}
        for i, facts in facts_of(wanted):
            q = s.qualification_at(i)
            rows[i] = {
                "account_id": facts.get("account_id"),
                "account_name": facts.get("name"),
                "qualification": q,
                "revenue": _num(facts.get(s.revenue)) or 0.0,
                "profit": _profit(facts, s.revenue, s.margin_pct),
            }
            if i in top and q in self.unqualified:
                unqualified_rows[i] = self._unqualified_row(rows[i], facts)
        # ties of profit at the cut are broken by account id (policy §7)
        ranked = sorted(
            (i for i in top if i in rows),
            key=lambda i: (-(rows[i]["profit"] or 0.0), str(rows[i]["account_id"]), i),
        )[: s.top_count(self.top_fraction)]
        total_profit = s.total_known_profit
        top_accounts = []
        for i in ranked:
            row = dict(rows[i])
            row["share_of_known_profit_pct"] = (
                _round(row["profit"] / total_profit * 100) if total_profit > 0 else None
            )
            top_accounts.append(_money_rows(row))
        top_share = None
        if ranked and total_profit > 0:
            top_share = sum(rows[i]["profit"] or 0.0 for i in ranked) / total_profit * 100
        largest = None
        if s.largest is not None and s.total_revenue > 0 and s.largest[1] in rows:
            row = dict(rows[s.largest[1]])
            row.pop("profit")
            row["share_of_posted_revenue_pct"] = _round(row["revenue"] / s.total_revenue * 100)
            largest = _money_rows(row)
        unqualified = [unqualified_rows[i] for i in ranked if i in unqualified_rows]
        metrics = s.metrics(top_share, len(ranked))
        metrics["largest_account_name"] = (
            None if largest is None else str(largest["account_name"] or largest["account_id"])
        )
        metrics["unqualified_top_profit_count"] = len(unqualified)
        metrics.update(self.inputs)
        findings = self.rs.evaluate_portfolio_metrics(
            {k: metrics[k] for k in self.declared if k in metrics}
        )
        for f in findings:
            self._name_accounts(f, top_accounts, largest, unqualified)
        return {
            "findings": findings,
            "counts": s.counts(),
            "totals": s.totals(self.rs.currency),
            "top_accounts": top_accounts,
            "largest_account": largest,
            "metrics": metrics,
        }

    def _unqualified_row(self, row: Mapping[str, Any], facts: Mapping[str, Any]) -> dict:
        rs = self.rs
        d = rs.decide_valid(facts)
        paths = rs.advisor.what_it_would_take(d) if rs.advisor.advice else []
        return {
            "account_id": row["account_id"],
            "account_name": row["account_name"],
            "qualification": row["qualification"],
            "first_step": paths[0] if paths else None,
        }

    def _name_accounts(
        self,
        finding: dict[str, Any],
        top: list[dict[str, Any]],
        largest: Mapping[str, Any] | None,
        unqualified: list[dict[str, Any]],
    ) -> None:
        """The accounts a finding is about, by the metrics its rule reads, in its facts and
        at the end of its message."""
        facts = finding["facts"]
        named: Sequence[Mapping[str, Any]] = []
        if "unqualified_top_profit_count" in facts:
            facts["account_ids"] = [r["account_id"] for r in unqualified]
            facts["accounts"] = unqualified
            named = unqualified
        elif "top_profit_share_pct" in facts:
            facts["top_account_ids"] = [r["account_id"] for r in top]
            named = top
        if "max_revenue_share_pct" in facts and largest is not None:
            facts["largest_account_id"] = largest["account_id"]
            facts["share_of_posted_revenue_pct"] = largest["share_of_posted_revenue_pct"]
        if named:
            msg = finding["message"]
            finding["message"] = {
                "en": f"{msg['en']} {_accounts_sentence(named, 'en')}",
                "zh": f"{msg['zh']}{_accounts_sentence(named, 'zh')}",
            }


def _accounts_sentence(rows: Sequence[Mapping[str, Any]], lang: str) -> str:
    names = [_who(r, lang) for r in rows[:_NAMED]]
    more = len(rows) - len(names)
    if lang == "zh":
        tail = f"等{more:,}个客户" if more else ""
        return "涉及客户：" + "、".join(names) + tail + "。"
    listed = format_value(names + ([f"{more:,} more"] if more else []), None, "en")
    return f"The accounts: {listed}."


def _who(row: Mapping[str, Any], lang: str) -> str:
    name, aid = row.get("account_name"), row.get("account_id")
    if not name:
        return str(aid)
    return f"{name}（{aid}）" if lang == "zh" else f"{name} ({aid})"


class _Sums:
    """Running sums over the accounts, and per account the profit ranking's 13 bytes."""

    def __init__(self, revenue: str, margin_pct: str, smb: Sequence[str]):
        self.revenue, self.margin_pct, self.smb = revenue, margin_pct, set(smb)
        self.n = 0
        self.total_revenue = 0.0
        # the sum of squared revenues as scale² × ssq (scale: the largest |revenue| so far), so
        # that tiny revenues do not underflow to 0 (2e-309² is 0.0; the HHI then divided by 0)
        self.sq_scale = 0.0
        self.sq_sum = 0.0
        self.smb_revenue = 0.0
        self.smb_count = 0
        self.total_known_profit = 0.0
        self.largest: tuple[float, int, str] | None = None  # (revenue, position, id)
        self.by_q: dict[str, list[float]] = {}  # accounts, revenue, known profit, known
        self.qualification = Counter[str]()
        self.segments = Counter[str]()
        self.stage = Counter[str]()
        self.q_codes: dict[str, int] = {}
        self.q_names: list[str] = []
        self.q_of = array("b")  # every account's qualification, as a code
        self.profit = array("d")  # known profits ...
        self.where = array("i")  # ... and the positions of their accounts

    def add(self, facts: Mapping[str, Any], qualification: Any, segments: Any, stage: Any) -> None:
        i = self.n
        self.n += 1
        q = str(qualification)
        code = self.q_codes.get(q)
        if code is None:
            code = self.q_codes[q] = len(self.q_names)
            self.q_names.append(q)
        self.q_of.append(code)
        self.qualification[q] += 1
        self.segments.update(segments or ())
        self.stage[stage or "unknown"] += 1
        r = _num(facts.get(self.revenue)) or 0.0
        self.total_revenue += r
        a = abs(r)
        if a > self.sq_scale:
            self.sq_sum = 1.0 + self.sq_sum * (self.sq_scale / a) ** 2
            self.sq_scale = a
        elif a:
            self.sq_sum += (a / self.sq_scale) ** 2
        aid = str(facts.get("account_id", ""))
        big = self.largest
        if big is None or r > big[0] or (r == big[0] and aid < big[2]):
            self.largest = (r, i, aid)
        t = self.by_q.setdefault(q, [0, 0.0, 0.0, 0])
        t[0] += 1
        t[1] += r
        if q in self.smb:
            self.smb_revenue += r
            self.smb_count += 1
        p = _profit(facts, self.revenue, self.margin_pct)
        if p is not None:
            self.profit.append(p)
            self.where.append(i)
            self.total_known_profit += p
            t[2] += p
            t[3] += 1

    def qualification_at(self, i: int) -> str:
        return self.q_names[self.q_of[i]]

    def top_count(self, fraction: float) -> int:
        if not self.profit:
            return 0
        # Decimal: 0.2 × 15 is 3.0000000000000004 in floats, and ceil would make it 4.
        return int(max(1, math.ceil(Decimal(repr(float(fraction))) * len(self.profit))))

    def top_positions(self, fraction: float) -> set[int]:
        """The positions of the top accounts, with every account tied at the cut (the
        account ids, read afterwards, break those ties)."""
        k = self.top_count(fraction)
        if k == 0:
            return set()
        cut = heapq.nlargest(k, self.profit)[-1]
        return {i for p, i in zip(self.profit, self.where, strict=True) if p >= cut}

    def metrics(self, top_share: float | None, top_count: int) -> dict[str, Any]:
        max_share = hhi = smb_share = None
        total = self.total_revenue
        if total > 0:
            max_share = (self.largest[0] if self.largest else 0.0) / total * 100
            hhi = self.sq_sum * (self.sq_scale / total) ** 2 * 10_000
            smb_share = self.smb_revenue / total * 100
        return {
            "account_count": self.n,
            "top_profit_share_pct": _round(top_share),
            "max_revenue_share_pct": _round(max_share),
            "hhi": _round(hhi),
            "smb_revenue_share_pct": _round(smb_share),
            "total_revenue": _round(total),
            "total_known_profit": _round(self.total_known_profit) if self.profit else None,
            "known_profit_count": len(self.profit),
            "top_count": top_count,
            "smb_count": self.smb_count,
        }

    def counts(self) -> dict[str, Any]:
        """Accounts per qualification, per segment and per stage (`unknown` for no stage)."""
        return {
            "unit": "account",
            "qualification": dict(sorted(self.qualification.items())),
            "segments": dict(sorted(self.segments.items())),
            "stage": dict(sorted(self.stage.items())),
        }

    def totals(self, currency: str) -> dict[str, Any]:
        """Accounts, revenue and known profit per qualification, and their shares."""
        total, profit = self.total_revenue, self.total_known_profit
        out = {}
        for q in sorted(self.by_q):
            n, r, p, known = self.by_q[q]
            out[q] = {
                "accounts": int(n),
                "revenue": _round(r),
                "share_of_posted_revenue_pct": _round(r / total * 100) if total > 0 else None,
                "profit": _round(p) if known else None,
                "profit_known_accounts": int(known),
                "share_of_known_profit_pct": _round(p / profit * 100) if profit > 0 else None,
            }
        return {
            "currency": currency,
            "accounts": self.n,
            "revenue": _round(total),
            "profit": _round(profit) if self.profit else None,
            "qualification": out,
        }


def _money_rows(row: dict[str, Any]) -> dict[str, Any]:
    for k in ("revenue", "profit"):
        if k in row:
            row[k] = _round(row[k])
    return row


def _profit(facts: Mapping[str, Any], revenue: str, margin_pct: str) -> float | None:
    spend, margin = _num(facts.get(revenue)), _num(facts.get(margin_pct))
    return None if spend is None or margin is None else spend * margin / 100


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
    # a share of a total that is positive but tiny beside its parts (+1e6, -1e6 and 1e-302
    # of profit) overflows: no number a person could read, so unknown, never inf (which no
    # JSON carries, and which the portfolio facts refuse)
    if value is None or not math.isfinite(value):
        return None
    return round(value, _DECIMALS)


# -- the figures of facts and verdicts already in memory (tests, small callers)


def _sums_of(
    facts: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Mapping[str, Any]],
    revenue: str,
    margin_pct: str,
    smb: Sequence[str],
) -> _Sums:
    s = _Sums(revenue, margin_pct, smb)
    for f, v in zip(facts, verdicts, strict=True):
        s.add(f, v.get("qualification"), v.get("segments"), v.get("stage"))
    return s


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
    s = _sums_of(facts, verdicts, revenue, margin_pct, smb)
    top = s.top_positions(top_fraction)
    ranked = sorted(
        top,
        key=lambda i: (
            -(_profit(facts[i], revenue, margin_pct) or 0.0),
            str(facts[i].get("account_id", "")),
        ),
    )[: s.top_count(top_fraction)]
    share = None
    if ranked and s.total_known_profit > 0:
        got = sum(_profit(facts[i], revenue, margin_pct) or 0.0 for i in ranked)
        share = got / s.total_known_profit * 100
    return s.metrics(share, len(ranked))


def portfolio_counts(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accounts per qualification, per segment and per stage (`unknown` for no stage)."""
    s = _Sums("", "", ())
    for v in verdicts:
        s.add({}, v.get("qualification"), v.get("segments"), v.get("stage"))
    return s.counts()


def positions_of(records: Iterator[Mapping[str, Any]]) -> FactsOf:
    """A `facts_of` over a second pass of records (validated facts, in the first pass's
    order): it yields only the positions asked for."""

    def facts_of(positions: Sequence[int]) -> Iterator[tuple[int, Mapping[str, Any]]]:
        wanted = iter(sorted(positions))
        nxt = next(wanted, None)
        for i, facts in enumerate(records):
            if nxt is None:
                return
            if i == nxt:
                yield i, facts
                nxt = next(wanted, None)

    return facts_of
