"""Messages of the default policy read well at the edges, in both languages."""

from __future__ import annotations

import json
import re
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


RETAIL = json.loads(
    (ROOT / "examples" / "retail-chain-after-big-contract.json").read_text(encoding="utf-8")
)


def _complacency(verdict: dict) -> dict:
    (g,) = [g for g in verdict["guardrails"] if g["rule"] == "guard.complacency"]
    return g["message"]


def test_volumes_read_with_their_unit(rs) -> None:
    # the seed's own case (误区五): a contract of 50万套 against 60万套 the year before
    message = _complacency(rs.evaluate(RETAIL))
    assert "（合同销量50万套，签约前全年销量60万套）" in message["zh"]
    assert (
        "(volume 500,000 units, against 600,000 units in the whole year before it)"
        in (message["en"])
    )


def test_one_unit_is_singular_in_english(rs) -> None:
    message = _complacency(rs.evaluate({**RETAIL, "contract_volume": 1, "prior_total_volume": 1}))
    assert "(volume 1 unit, against 1 unit in the whole year before it)" in message["en"]
    assert "（合同销量1套，签约前全年销量1套）" in message["zh"]


def _texts(v: object):
    if isinstance(v, dict):
        if isinstance(v.get("en"), str) and isinstance(v.get("zh"), str):
            yield v
        else:
            for x in v.values():
                yield from _texts(x)
    elif isinstance(v, list):
        for x in v:
            yield from _texts(x)


def test_no_unit_word_is_written_twice_in_any_verdict(rs) -> None:
    """Every text of every verdict of the examples and the corpus, in both languages: a
    template that writes the word itself (「{x}次」) gets no second one from `unit_word`."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "golden"))
    import verdicts as golden

    doubled_zh = ("次次", "条条", "家家", "项项", "套套", "件件")
    doubled_en = re.compile(r"\b(units?) units?\b")
    seen = {"套": 0, "家": 0, "units": 0}
    for label, facts in golden.accounts():
        for t in _texts(rs.evaluate(facts)):
            assert not any(w in t["zh"] for w in doubled_zh), (label, t["zh"])
            assert not doubled_en.search(t["en"]), (label, t["en"])
            for w in seen:
                seen[w] += w in t["zh"] or w in t["en"]
    assert all(seen.values()), seen  # the words are written at all
