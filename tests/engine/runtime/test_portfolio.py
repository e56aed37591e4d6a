"""The portfolio view reads its measures from the ruleset, never from names in the code."""

from __future__ import annotations

import pytest
from builders import FIXTURES

import engine
from engine import RulesetError

MINI = FIXTURES / "rulesets" / "mini.yaml"


def test_a_ruleset_with_other_names_gets_the_same_portfolio_view() -> None:
    rs = engine.load_ruleset(MINI)  # revenue: spend, margin_pct: margin_pct, smb: [poor]
    try:
        out = rs.evaluate_portfolio(
            [
                {"account_id": "A", "spend": 900, "margin_pct": 10, "kind": "company"},
                {"account_id": "B", "spend": 100, "margin_pct": 10, "kind": "company"},
            ]
        )
        m = out["metrics"]
        assert m["total_revenue"] == 1000 and m["max_revenue_share_pct"] == 90.0
        assert m["hhi"] == pytest.approx(90**2 + 10**2)
        poor = sum(r["qualification"] == "poor" for r in out["results"])
        assert m["smb_count"] == poor
        assert [f["rule"] for f in out["findings"]] == ["portfolio.concentration"]
    finally:
        rs.close()


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("  revenue: spend", "  revenue: spnd", "ruleset.portfolio_measure"),
        ("  margin_pct: margin_pct", "  margin_pct: kind", "ruleset.portfolio_measure"),
        ("  smb: [poor]", "  smb: [pooor]", "ruleset.unknown_qualification"),
    ],
)
def test_portfolio_measures_must_name_facts_and_qualifications(old, new, code) -> None:
    text = MINI.read_text(encoding="utf-8")
    assert text.count(old) == 1
    with pytest.raises(RulesetError) as info:
        engine.prepare("mini.yaml", text.replace(old, new))
    assert [d.code for d in info.value.diagnostics] == [code]
    if "kind" not in new:  # a typo gets a did-you-mean; an enum fact is simply wrong
        assert info.value.diagnostics[0].hint.startswith("did you mean")
