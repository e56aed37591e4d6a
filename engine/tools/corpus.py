"""Synthetic account corpora: realistic facts for impact analysis and benchmarks.

The accounts follow plausible distributions and correlations (policy.md §2): an
industry brings its typical institution types and purchasing habits, spends are
log-normal, costs scale with spend, relationship depth grows with the years an
account has been ours, and every optional fact goes missing at its own rate, as
in a real CRM export. The same seed always gives the same accounts, byte for
byte: only `random.Random(seed)` is used, and floats are rounded before they are
written.

Example::

    from engine.tools.corpus import generate_accounts, write_jsonl
    accounts = generate_accounts(2000, seed=42)
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["MISSING_RATES", "dumps_account", "generate_accounts", "iter_accounts", "write_jsonl"]


@dataclass(frozen=True)
class _Industry:
    weight: float  # share of accounts
    institutions: tuple[tuple[str, float], ...]  # institution_type -> probability
    spend_median: float  # median annual spend, CNY
    centralized: float  # P(centralized) for a large account
    names: tuple[str, ...]  # name suffixes


_INDUSTRIES: dict[str, _Industry] = {
    "banking": _Industry(0.12, (("commercial", 1.0),), 6e6, 0.75, ("银行", "农商银行", "信托")),
    "insurance": _Industry(0.06, (("commercial", 1.0),), 4e6, 0.65, ("保险", "人寿")),
    "telecom": _Industry(0.08, (("commercial", 1.0),), 8e6, 0.75, ("电信", "移动通信", "联通")),
    "energy": _Industry(
        0.07, (("commercial", 0.85), ("party_government", 0.15)), 7e6, 0.6, ("能源", "电力", "石化")
    ),
    "manufacturing": _Industry(
        0.17,
        (("commercial", 0.95), ("military", 0.05)),
        2e6,
        0.45,
        ("制造", "机械", "电子", "重工"),
    ),
    "retail": _Industry(0.14, (("commercial", 1.0),), 1.5e6, 0.4, ("商贸", "超市", "百货")),
    "logistics": _Industry(0.06, (("commercial", 1.0),), 1.8e6, 0.45, ("物流", "快运")),
    "healthcare": _Industry(
        0.08, (("healthcare", 1.0),), 2.5e6, 0.5, ("医院", "人民医院", "中医院")
    ),
    "government": _Industry(
        0.07,
        (("party_government", 0.6), ("public_security", 0.2), ("judiciary", 0.2)),
        3e6,
        0.7,
        ("市政府", "公安局", "人民法院", "税务局"),
    ),
    "education": _Industry(0.06, (("education", 1.0),), 1.2e6, 0.45, ("大学", "学院", "中学")),
    "media": _Industry(
        0.04, (("news_media", 0.7), ("culture", 0.3)), 1e6, 0.4, ("日报", "广电", "出版社")
    ),
    "defense": _Industry(0.02, (("military", 1.0),), 5e6, 0.8, ("研究所", "装备部")),
}

_INDUSTRY_NAMES = tuple(_INDUSTRIES)
_INDUSTRY_WEIGHTS = tuple(ind.weight for ind in _INDUSTRIES.values())

_PLACES = (
    "华北", "华东", "华南", "西部", "中原", "江南", "东方", "长江", "海峡", "北方", "新城",
    "金桥", "光明", "前海", "滨海", "京华", "浦江", "天府", "湘江", "闽江", "燕山", "珠江",
)  # fmt: skip

# Share of accounts whose CRM record lacks the fact (policy: every fact but
# account_id is optional). Core qualification facts are filled in more often
# than soft, relationship-level ones.
MISSING_RATES: dict[str, float] = {
    "industry": 0.05,
    "institution_type": 0.05,
    "product_fit": 0.06,
    "purchasing_model": 0.07,
    "purchase_pattern": 0.06,
    "annual_spend": 0.05,
    "expected_years": 0.08,
    "purchase_frequency": 0.10,
    "acquisition_cost": 0.12,
    "retention_cost_per_year": 0.15,
    "gross_margin_pct": 0.08,
    "profit_rank_pct": 0.12,
    "revenue_share_pct": 0.10,
    "value_chain_partner": 0.15,
    "growth_potential": 0.12,
    "competitor_target": 0.18,
    "seller_scale_match": 0.15,
    "industry_expertise": 0.10,
    "industry_references": 0.12,
    "tailored_solution": 0.10,
    "uses_our_products": 0.05,
    "relationship_years": 0.06,
    "key_account_manager": 0.06,
    "served_by_smb_team": 0.08,
    "dedicated_ka_unit": 0.08,
    "ka_unit_head_level": 0.12,
    "executive_meetings_per_year": 0.15,
    "escalation_channels": 0.15,
    "in_customer_emergency_process": 0.20,
    "reciprocal_purchasing": 0.20,
    "consulting_engagement": 0.20,
    "board_interlock": 0.25,
    "discount_pct": 0.08,
    "rebate_pct": 0.12,
    "market_support_pct": 0.15,
    "concessions_tied_to_commitments": 0.15,
    "contract_volume": 0.20,
    "prior_total_volume": 0.20,
    "support_activities": 0.15,
    "smb_revenue_share_pct": 0.20,
    "smb_accounts_dropped_pct": 0.25,
}

_SUPPORT = (
    "market_analysis",
    "joint_planning",
    "supply_assurance",
    "sales_training",
    "on_site_promotion",
    "timely_invoicing",
    "regular_contact",
)

# Our own yearly revenue: revenue_share_pct of an account is its spend over this.
_OUR_REVENUE = 1.2e9


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    # The last entry takes whatever probability is left.
    x = rng.random()
    acc = 0.0
    for value, p in table:
        acc += p
        if x < acc:
            return value
    return table[-1][0]


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method; lam stays small here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _amount(x: float) -> int:
    """A CRM amount: whole thousands of yuan, at least 1,000."""
    return max(1000, int(round(x, -3)))


def _chance(rng: random.Random, p: float) -> bool:
    return rng.random() < _clip(p, 0.0, 1.0)


def _account(rng: random.Random, index: int) -> dict[str, Any]:
    industry = rng.choices(_INDUSTRY_NAMES, weights=_INDUSTRY_WEIGHTS)[0]
    ind = _INDUSTRIES[industry]
    institution = _pick(rng, ind.institutions)

    # Size: log-normal spend around the industry's median; `size` in ~[-3, 3].
    size = rng.gauss(0.0, 1.0)
    annual_spend = _amount(ind.spend_median * math.exp(1.1 * size))
    large = size > 0.5

    p_central = ind.centralized if large else ind.centralized * 0.5
    purchasing = _pick(
        rng,
        (("centralized", p_central), ("mixed", (1 - p_central) * 0.5), ("decentralized", 1.0)),
    )
    pattern = _pick(rng, (("recurring", 0.62), ("irregular", 0.24), ("one_off", 1.0)))
    if pattern == "recurring":
        expected_years = min(15, 2 + _poisson(rng, 3.0))
        frequency = max(1, _poisson(rng, 3.0 + 3.0 * max(size, 0.0)))
    elif pattern == "irregular":
        expected_years = 1 + _poisson(rng, 1.2)
        frequency = _poisson(rng, 1.5)
    else:
        expected_years = 1 if rng.random() < 0.85 else 0
        frequency = 1
    product_fit = _pick(rng, (("strong", 0.42), ("partial", 0.36), ("none", 1.0)))

    # Costs scale with spend; one-off deals are dearer to win for what they bring.
    acq_ratio = math.exp(rng.gauss(math.log(0.18 if pattern == "recurring" else 0.35), 0.6))
    acquisition_cost = _amount(annual_spend * acq_ratio)
    retention_cost = _amount(annual_spend * math.exp(rng.gauss(math.log(0.04), 0.5)))

    # Margins are normal-ish with a thin tail below zero (loss leaders, price wars).
    margin = rng.gauss(17.0, 8.0) if rng.random() > 0.04 else rng.gauss(-4.0, 5.0)
    gross_margin_pct = round(_clip(margin, -60.0, 70.0), 1)
    # Bigger, healthier accounts rank higher by profit (0 = top).
    rank = 50.0 - 22.0 * size - 0.8 * (gross_margin_pct - 17.0) + rng.gauss(0.0, 12.0)
    profit_rank_pct = round(_clip(rank, 0.0, 100.0), 1)
    revenue_share_pct = round(_clip(100.0 * annual_spend / _OUR_REVENUE, 0.0, 100.0), 2)
    if rng.random() < 0.01:  # a few accounts we depend on heavily
        revenue_share_pct = round(rng.uniform(25.0, 45.0), 1)

    relationship_years = 0.0 if rng.random() < 0.18 else round(rng.expovariate(1 / 5.0), 1)
    uses = relationship_years > 0 and rng.random() < 0.92
    depth = min(relationship_years, 15.0) / 15.0  # 0..1, how deep the relationship is
    ka_manager = _chance(rng, 0.25 + 0.35 * large + 0.3 * depth)
    smb_team = not ka_manager and _chance(rng, 0.6 - 0.3 * large)
    dedicated = _chance(rng, 0.35 + 0.35 * large)
    head = _pick(rng, (("vp", 0.35), ("director", 0.45), ("manager", 1.0))) if dedicated else "none"
    strengthen = uses and depth > 0.25

    concessions = rng.random() < 0.7
    discount = round(rng.expovariate(1 / 6.0), 1) if concessions else 0.0
    rebate = round(rng.expovariate(1 / 2.5), 1) if concessions and rng.random() < 0.5 else 0.0
    support = round(rng.expovariate(1 / 2.0), 1) if concessions and rng.random() < 0.4 else 0.0

    prior_volume = int(round(math.exp(rng.gauss(math.log(500_000), 0.8)), -2))
    weight = rng.betavariate(1.2, 6.0) if rng.random() > 0.08 else rng.uniform(0.5, 1.2)
    contract_volume = int(round(prior_volume * weight, -2))
    if rng.random() < 0.01:
        prior_volume = 0  # a first contract: no prior volume at all
    n_support = min(len(_SUPPORT), _poisson(rng, 1.0 + 4.0 * depth))

    facts: dict[str, Any] = {
        "account_id": f"ACC-{index + 1:06d}",
        "name": f"{rng.choice(_PLACES)}{rng.choice(ind.names)}",
        "industry": industry,
        "institution_type": institution,
        "product_fit": product_fit,
        "purchasing_model": purchasing,
        "purchase_pattern": pattern,
        "annual_spend": annual_spend,
        "expected_years": expected_years,
        "purchase_frequency": frequency,
        "acquisition_cost": acquisition_cost,
        "retention_cost_per_year": retention_cost,
        "gross_margin_pct": gross_margin_pct,
        "profit_rank_pct": profit_rank_pct,
        "revenue_share_pct": revenue_share_pct,
        "value_chain_partner": _chance(rng, 0.12 + 0.25 * depth),
        "growth_potential": _pick(rng, (("high", 0.25), ("medium", 0.45), ("low", 1.0))),
        "competitor_target": _chance(rng, 0.25 + 0.3 * large),
        "seller_scale_match": _chance(rng, 0.7 - 0.25 * (size > 1.5)),
        "industry_expertise": _chance(rng, 0.55 + 0.2 * depth),
        "industry_references": _poisson(rng, 1.5 + 2.0 * depth),
        "tailored_solution": _chance(rng, 0.3 + 0.25 * large),
        "uses_our_products": uses,
        "relationship_years": relationship_years,
        "key_account_manager": ka_manager,
        "served_by_smb_team": smb_team,
        "dedicated_ka_unit": dedicated,
        "ka_unit_head_level": head,
        "executive_meetings_per_year": _poisson(rng, 0.3 + 3.0 * depth + 1.0 * large),
        "escalation_channels": _poisson(rng, 0.6 + 2.0 * depth),
        "in_customer_emergency_process": uses and _chance(rng, 0.1 + 0.6 * depth),
        "reciprocal_purchasing": strengthen and _chance(rng, 0.3),
        "consulting_engagement": strengthen and _chance(rng, 0.35),
        "board_interlock": strengthen and _chance(rng, 0.1),
        "discount_pct": discount if discount <= 40 else 40.0,
        "rebate_pct": rebate if rebate <= 20 else 20.0,
        "market_support_pct": support if support <= 15 else 15.0,
        "concessions_tied_to_commitments": _chance(rng, 0.55),
        "contract_volume": contract_volume,
        "prior_total_volume": prior_volume,
        "support_activities": sorted(rng.sample(_SUPPORT, n_support), key=_SUPPORT.index),
        "smb_revenue_share_pct": round(_clip(rng.gauss(32.0, 10.0), 2.0, 80.0), 1),
        "smb_accounts_dropped_pct": round(_clip(rng.expovariate(1 / 5.0), 0.0, 60.0), 1),
    }
    # One draw per fact, in a fixed order, so that missingness never shifts the
    # values of other facts.
    for fact, rate in MISSING_RATES.items():
        if rng.random() < rate:
            del facts[fact]
    return facts


def iter_accounts(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield `n` synthetic accounts; the same (n, seed) always gives the same accounts."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    for i in range(n):
        yield _account(rng, i)


def generate_accounts(n: int, seed: int) -> list[dict[str, Any]]:
    """A list of `n` synthetic accounts, reproducible from `seed`."""
    return list(iter_accounts(n, seed))


def dumps_account(account: dict[str, Any]) -> str:
    """One JSONL line (no newline): compact, UTF-8 text, keys in fact order."""
    return json.dumps(account, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(
    accounts: Iterator[dict[str, Any]] | list[dict[str, Any]], out: IO[str] | Path
) -> int:
    """Write accounts as JSON Lines to a path or an open text stream; returns the count."""
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="\n") as f:
            return write_jsonl(accounts, f)
    n = 0
    for account in accounts:
        out.write(dumps_account(account) + "\n")
        n += 1
    return n
