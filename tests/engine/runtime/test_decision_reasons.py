"""Decision reasons name the required criteria that decided them, by their labels."""

from __future__ import annotations

import pytest
from builders import ROOT

from engine import load_ruleset


@pytest.fixture(scope="module")
def rs():
    ruleset = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    yield ruleset
    ruleset.close()


def test_not_met_reason_names_the_failed_criterion(rs):
    v = rs.evaluate({"account_id": "A", "product_fit": "none", "purchasing_model": "centralized"})
    assert v["qualification"] == "not_key_account"
    assert "Required criterion not met: product fit." in v["summary"]["en"]
    assert "硬指标不达标：产品对路。" in v["summary"]["zh"]


def test_insufficient_data_reason_names_every_undecided_criterion(rs):
    v = rs.evaluate({"account_id": "A", "product_fit": "strong"})
    assert v["qualification"] == "insufficient_data"
    assert "central purchasing and recurring purchases" in v["summary"]["en"]
    assert "统一采购和持续采购" in v["summary"]["zh"]


def test_outcome_lists_are_usable_in_conditions(tmp_path):
    text = (ROOT / "tests" / "fixtures" / "rulesets" / "mini.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "    - when: required_not_met > 0\n",
        "    - when: \"'crit.kind' in required_not_met_rules\"\n",
    )
    path = tmp_path / "mini.yaml"
    path.write_text(text, encoding="utf-8")
    rs = load_ruleset(path)
    try:
        assert (
            rs.evaluate({"account_id": "A", "kind": "ngo", "spend": 5e6})["decision"]["step"] == 1
        )
        assert (
            rs.evaluate({"account_id": "A", "kind": "company", "spend": 1})["decision"]["step"] != 1
        )
    finally:
        rs.close()
