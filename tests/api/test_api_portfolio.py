"""Portfolio metrics (policy §7) and POST /v1/portfolio/evaluate."""

from __future__ import annotations

import pytest
from conftest import KEY_FACTS, Running

from engine.runtime.portfolio import portfolio_counts, portfolio_metrics


def acc(i, spend=None, margin=None):
    f = {"account_id": i}
    if spend is not None:
        f["annual_spend"] = spend
    if margin is not None:
        f["gross_margin_pct"] = margin
    return f


def v(q="key_account", segments=(), stage=None):
    return {"qualification": q, "segments": list(segments), "stage": stage}


MEASURES = {"revenue": "annual_spend", "margin_pct": "gross_margin_pct", "smb": ["not_key_account"]}


def metrics(facts, verdicts, **kw):
    return portfolio_metrics(facts, verdicts, **MEASURES, **kw)


def test_top_accounts_share_uses_ceil_and_breaks_ties_by_account_id() -> None:
    # 15 accounts with known profit: ceil(0.2 × 15) = 3 (not 4, as float 0.2 × 15 would give).
    facts = [acc(f"A{i:02}", 100, 10) for i in range(15)]
    m = metrics(facts, [v()] * 15)
    assert m["top_count"] == 3
    assert m["top_profit_share_pct"] == pytest.approx(20.0)
    facts = [acc("B", 1000, 10), acc("A", 1000, 10), acc("C", 10, 10)]
    assert metrics(facts, [v()] * 3)["top_count"] == 1
    assert metrics(facts, [v()] * 3)["top_profit_share_pct"] == pytest.approx(100 * 100 / 201)


def test_unknown_profit_is_left_out_and_nonpositive_total_omits_the_share() -> None:
    facts = [acc("A", 100, 50), acc("B", 100), acc("C", None, 10)]
    m = metrics(facts, [v()] * 3)
    assert m["known_profit_count"] == 1 and m["top_profit_share_pct"] == 100.0
    m = metrics([acc("A", 100, -5), acc("B", 100, 5)], [v()] * 2)
    assert m["top_profit_share_pct"] is None
    assert metrics([acc("A", 100)], [v()])["top_profit_share_pct"] is None


def test_concentration_and_smb_share() -> None:
    facts = [acc("A", 600), acc("B", 300), acc("C", 100), acc("D")]
    verdicts = [v(), v("not_key_account"), v("insufficient_data"), v("not_key_account")]
    m = metrics(facts, verdicts)
    assert m["max_revenue_share_pct"] == 60.0
    assert m["hhi"] == pytest.approx(60**2 + 30**2 + 10**2)
    assert m["smb_revenue_share_pct"] == 30.0  # insufficient_data is not SMB
    zero = metrics([acc("A", 0), acc("B")], [v(), v()])
    assert zero["hhi"] is None and zero["max_revenue_share_pct"] is None


def test_counts_use_unknown_for_no_stage() -> None:
    counts = portfolio_counts(
        [
            v(segments=["economic"], stage="establish"),
            v("not_key_account", ["economic", "important"]),
            v(),
        ]
    )
    assert counts == {
        "unit": "account",
        "qualification": {"key_account": 2, "not_key_account": 1},
        "segments": {"economic": 2, "important": 1},
        "stage": {"establish": 1, "unknown": 2},
    }


pytestmark_http = pytest.mark.anyio


@pytestmark_http
async def test_portfolio_endpoint_findings_counts_and_logged_verdicts(svc: Running) -> None:
    accounts = [
        {**KEY_FACTS, "account_id": "P-1", "annual_spend": 9_000_000},
        {**KEY_FACTS, "account_id": "P-2", "annual_spend": 500_000, "product_fit": "none"},
        {**KEY_FACTS, "account_id": "P-3", "annual_spend": 500_000},
    ]
    r = await svc.client.post(
        "/v1/portfolio/evaluate",
        json={"accounts": accounts, "portfolio": {"smb_accounts_dropped_pct": 12}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["account_id"] for x in body["results"]] == ["P-1", "P-2", "P-3"]
    rules = {f["rule"]: f["severity"] for f in body["findings"]}
    assert rules["portfolio.concentration"] == "high"
    assert rules["portfolio.small_customer_neglect"] == "warning"
    assert rules["portfolio.pareto"] == "info"
    assert sum(body["counts"]["qualification"].values()) == 3
    assert set(body["counts"]) == {"unit", "qualification", "segments", "stage"}
    # named accounts, totals per qualification (policy §7)
    assert [a["account_id"] for a in body["top_accounts"]] == ["P-1"]
    assert body["largest_account"]["account_id"] == "P-1"
    assert body["largest_account"]["share_of_posted_revenue_pct"] == 90.0
    assert body["totals"]["revenue"] == 10_000_000
    assert sum(t["accounts"] for t in body["totals"]["qualification"].values()) == 3
    (conc,) = [f for f in body["findings"] if f["rule"] == "portfolio.concentration"]
    assert conc["facts"]["largest_account_id"] == "P-1"
    # The portfolio view does not change an account's own verdict.
    alone = (await svc.client.post("/v1/evaluate", json=accounts[0])).json()
    assert alone["qualification"] == body["results"][0]["qualification"]
    got = await svc.client.get(f"/v1/decisions/{body['results'][1]['decision_id']}")
    assert got.status_code == 200


@pytestmark_http
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            {"accounts": [KEY_FACTS, {"account_id": "X", "annual_spend": -1}]},
            ["accounts", 1, "annual_spend"],
        ),
        (
            {"accounts": [KEY_FACTS], "portfolio": {"smb_accounts_dropped_pct": 120}},
            ["portfolio", "smb_accounts_dropped_pct"],
        ),
        ({"accounts": [KEY_FACTS], "portfolio": {"other": 1}}, ["portfolio", "other"]),
        ({"accounts": [KEY_FACTS], "portfolio": []}, ["portfolio"]),
        ({"accounts": [3]}, ["accounts", 0]),
        ({"accounts": [], "x": 1}, ["x"]),
    ],
)
async def test_portfolio_invalid_input_is_422_with_loc(svc: Running, body, loc) -> None:
    r = await svc.client.post("/v1/portfolio/evaluate", json=body)
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["errors"]]


def test_the_openapi_portfolio_response_lists_totals_and_named_accounts() -> None:
    from api.app import create_app

    schemas = create_app().openapi()["components"]["schemas"]
    portfolio = schemas["PortfolioResponse"]
    assert {"totals", "top_accounts", "largest_account"} <= set(portfolio["required"])
    assert "share_of_posted_revenue_pct" in schemas["LargestAccount"]["properties"]
    assert {"account_id", "account_name", "share_of_known_profit_pct"} <= set(
        schemas["TopAccount"]["properties"]
    )
    assert "qualification" in schemas["PortfolioTotals"]["properties"]
    assert schemas["PortfolioCounts"]["properties"]["unit"]["const"] == "account"
