"""Messages of the default policy read well at the edges, in both languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import load_ruleset

ROOT = Path(__file__).resolve().parents[1]
BANK = json.loads((ROOT / "examples" / "state-bank-head-office.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def rs():
    prepared = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    yield prepared
    prepared.close()


def test_pays_back_with_no_lifetime_purchases_says_the_ratio_cannot_be_computed(rs) -> None:
    # annual spend 0: lifetime purchases are ¥0, so cost / purchases divides by zero
    verdict = rs.evaluate({**BANK, "annual_spend": 0})
    (crit,) = [c for c in verdict["criteria"] if c["rule"] == "qualify.pays_back"]
    assert crit["outcome"] == "not_met"
    assert verdict["derived"]["acquisition_ratio"] is None
    assert "ratio not computable" in crit["message"]["en"]
    assert "投入比无法计算" in crit["message"]["zh"]
    assert "unknown" not in crit["message"]["en"] and "未知" not in crit["message"]["zh"]
