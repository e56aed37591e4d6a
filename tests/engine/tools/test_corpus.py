"""The synthetic corpus: reproducible, valid for the key-account facts, plausibly shaped."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from builders import ROOT

from engine import load_rulesets
from engine.tools.corpus import MISSING_RATES, generate_accounts, iter_accounts, write_jsonl

N = 3000


@pytest.fixture(scope="module")
def accounts() -> list[dict]:
    return generate_accounts(N, seed=42)


def _bytes(n: int, seed: int) -> bytes:
    out = io.StringIO()
    write_jsonl(iter_accounts(n, seed), out)
    return out.getvalue().encode("utf-8")


def test_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() -> None:
    assert _bytes(200, 7) == _bytes(200, 7)
    assert _bytes(200, 7) != _bytes(200, 8)


def test_shipped_corpus_is_seed_42_with_2000_accounts() -> None:
    shipped = (ROOT / "corpus" / "accounts-2000.jsonl").read_bytes()
    assert shipped == _bytes(2000, 42)


def test_every_account_is_valid_for_the_key_account_facts(accounts: list[dict]) -> None:
    rs = load_rulesets(ROOT / "rulesets")["key-account"]
    for account in accounts:
        rs.validate_facts(account)  # raises FactsError on the first invalid one


def test_account_ids_are_unique_and_always_present(accounts: list[dict]) -> None:
    ids = [a["account_id"] for a in accounts]
    assert len(set(ids)) == len(ids)


def test_institutions_follow_the_industry(accounts: list[dict]) -> None:
    pairs = Counter(
        (a["industry"], a["institution_type"])
        for a in accounts
        if "industry" in a and "institution_type" in a
    )
    assert {i for (ind, i) in pairs if ind == "healthcare"} == {"healthcare"}
    assert {i for (ind, i) in pairs if ind in ("banking", "telecom")} == {"commercial"}
    assert pairs[("government", "party_government")] > 0
    assert all(
        i in ("party_government", "public_security", "judiciary")
        for (ind, i) in pairs
        if ind == "government"
    )


def test_missing_rates_stay_within_realistic_bounds(accounts: list[dict]) -> None:
    assert all(0.05 <= rate <= 0.25 for rate in MISSING_RATES.values())
    for fact, rate in MISSING_RATES.items():
        observed = sum(fact not in a for a in accounts) / len(accounts)
        assert abs(observed - rate) < 0.04, fact


def test_large_banks_and_telecoms_mostly_buy_centrally(accounts: list[dict]) -> None:
    big = [
        a
        for a in accounts
        if a.get("industry") in ("banking", "telecom") and a.get("annual_spend", 0) >= 1e7
    ]
    small_retail = [
        a for a in accounts if a.get("industry") == "retail" and a.get("annual_spend", 1e9) < 1e6
    ]
    share = lambda xs: sum(a.get("purchasing_model") == "centralized" for a in xs) / len(xs)  # noqa: E731
    assert len(big) > 30 and len(small_retail) > 30
    assert share(big) > 0.55 > share(small_retail)


def test_spend_is_log_normal_and_costs_scale_with_it(accounts: list[dict]) -> None:
    spends = sorted(a["annual_spend"] for a in accounts if "annual_spend" in a)
    median, p99 = spends[len(spends) // 2], spends[int(len(spends) * 0.99)]
    assert 1e6 < median < 1e7
    assert p99 > 10 * median  # a long right tail
    both = [a for a in accounts if "annual_spend" in a and "acquisition_cost" in a]
    big = [a["acquisition_cost"] for a in both if a["annual_spend"] > 1e7]
    small = [a["acquisition_cost"] for a in both if a["annual_spend"] < 1e6]
    assert sum(big) / len(big) > 10 * sum(small) / len(small)


def test_margins_have_a_thin_tail_below_zero(accounts: list[dict]) -> None:
    margins = [a["gross_margin_pct"] for a in accounts if "gross_margin_pct" in a]
    below = sum(m < 0 for m in margins) / len(margins)
    assert 0.01 < below < 0.10
    assert 10 < sum(margins) / len(margins) < 25


def test_expected_years_follow_the_purchase_pattern(accounts: list[dict]) -> None:
    def mean_years(pattern: str) -> float:
        ys = [
            a["expected_years"]
            for a in accounts
            if a.get("purchase_pattern") == pattern and "expected_years" in a
        ]
        return sum(ys) / len(ys)

    assert mean_years("recurring") > mean_years("irregular") > mean_years("one_off")


def test_deeper_relationships_are_older(accounts: list[dict]) -> None:
    def years(pred) -> float:  # type: ignore[no-untyped-def]
        ys = [a["relationship_years"] for a in accounts if "relationship_years" in a and pred(a)]
        return sum(ys) / len(ys)

    deep = years(lambda a: a.get("consulting_engagement") or a.get("reciprocal_purchasing"))
    new = years(lambda a: a.get("uses_our_products") is False)
    assert deep > 2 * new


def test_the_corpus_exercises_every_qualification(accounts: list[dict]) -> None:
    rs = load_rulesets(ROOT / "rulesets")["key-account"]
    quals = Counter(rs.evaluate(a)["qualification"] for a in accounts[:600])
    assert set(quals) == {
        "key_account",
        "potential_key_account",
        "not_key_account",
        "insufficient_data",
    }
