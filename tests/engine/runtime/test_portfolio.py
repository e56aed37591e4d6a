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


# -- the default ruleset's portfolio: named accounts, totals, streaming (policy §7)

import itertools  # noqa: E402
import json  # noqa: E402
import tracemalloc  # noqa: E402

from builders import ROOT  # noqa: E402

from engine.runtime.portfolio import Portfolio  # noqa: E402

CORPUS = [
    json.loads(line)
    for line in (ROOT / "corpus" / "accounts-2000.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


@pytest.fixture(scope="module")
def ka():
    rs = engine.load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    yield rs
    rs.close()


def _profit(a):
    return a["annual_spend"] * a["gross_margin_pct"] / 100


def test_findings_name_their_accounts(ka) -> None:
    accounts = [
        {"account_id": "C", "name": "丙公司", "annual_spend": 100, "gross_margin_pct": 10},
        {
            "account_id": "B",
            "name": "乙公司",
            "annual_spend": 9000,
            "gross_margin_pct": 10,
            "product_fit": "none",
        },
        {"account_id": "A", "name": "甲公司", "annual_spend": 900, "gross_margin_pct": 100},
        {"account_id": "D", "annual_spend": 900, "gross_margin_pct": 100},
        {"account_id": "E", "annual_spend": 50, "gross_margin_pct": 10},
    ]
    out = ka.evaluate_portfolio(accounts)
    by_rule = {f["rule"]: f for f in out["findings"]}
    # ceil(0.2 × 5) = 1 top account: profit 900 for B, A and D; the tie goes to account id A
    assert by_rule["portfolio.pareto"]["facts"]["top_account_ids"] == ["A"]
    assert "甲公司 (A)" in by_rule["portfolio.pareto"]["message"]["en"]
    assert "甲公司（A）" in by_rule["portfolio.pareto"]["message"]["zh"]
    conc = by_rule["portfolio.concentration"]
    assert conc["facts"]["largest_account_id"] == "B"
    assert conc["facts"]["share_of_posted_revenue_pct"] == pytest.approx(9000 / 10950 * 100)
    assert "乙公司" in conc["message"]["en"] and "not its own share" in conc["message"]["en"]
    assert out["largest_account"]["account_id"] == "B"
    assert out["largest_account"]["account_name"] == "乙公司"
    assert [r["account_id"] for r in out["top_accounts"]] == ["A"]
    assert out["top_accounts"][0]["share_of_known_profit_pct"] == pytest.approx(900 / 2715 * 100)


def test_unqualified_top_profit_names_each_account_with_its_first_step_up(ka) -> None:
    out = ka.evaluate_portfolio(CORPUS[:400])
    (f,) = [f for f in out["findings"] if f["rule"] == "portfolio.unqualified_top_profit"]
    assert f["severity"] == "warning"
    top = [r["account_id"] for r in out["top_accounts"]]
    by_id = {a["account_id"]: a for a in CORPUS[:400]}
    verdicts = {v["account_id"]: v for v in out["results"]}
    want = [
        i for i in top if verdicts[i]["qualification"] in ("not_key_account", "insufficient_data")
    ]
    assert f["facts"]["account_ids"] == want and want
    assert f["facts"]["unqualified_top_profit_count"] == len(want)
    assert f"{len(want)} accounts of the {len(top)} accounts with the highest" in f["message"]["en"]
    stepped = 0
    for row in f["facts"]["accounts"]:
        v = verdicts[row["account_id"]]
        assert row["qualification"] == v["qualification"]
        assert row["account_name"] == by_id[row["account_id"]].get("name")
        assert row["first_step"] == (v["what_it_would_take"] or [None])[0]
        if row["first_step"]:  # the step, applied, gives what it says
            facts = dict(by_id[row["account_id"]])
            facts.update({c["fact"]: c["to"] for c in row["first_step"]["changes"]})
            assert ka.decide(facts).qualification == row["first_step"]["qualification"]
            stepped += 1
    assert stepped > 10
    # the rule is silent when every top account is a key account
    keys = [a for a in CORPUS if ka.decide(a).qualification == "key_account"][:20]
    out = ka.evaluate_portfolio(keys)
    assert "portfolio.unqualified_top_profit" not in {f["rule"] for f in out["findings"]}


def test_totals_per_qualification_add_up(ka) -> None:
    out = ka.evaluate_portfolio(CORPUS[:300])
    t = out["totals"]
    assert t["accounts"] == 300 and t["currency"] == "CNY"
    assert out["counts"]["unit"] == "account"
    assert {q: r["accounts"] for q, r in t["qualification"].items()} == out["counts"][
        "qualification"
    ]
    revenue = sum(a.get("annual_spend", 0) for a in CORPUS[:300])
    assert sum(r["revenue"] for r in t["qualification"].values()) == pytest.approx(revenue)
    assert t["revenue"] == pytest.approx(revenue)
    for q, row in t["qualification"].items():
        mine = [
            a
            for a, v in zip(CORPUS[:300], out["results"], strict=True)
            if v["qualification"] == q and "annual_spend" in a and "gross_margin_pct" in a
        ]
        assert row["profit_known_accounts"] == len(mine)
        assert row["profit"] == pytest.approx(sum(_profit(a) for a in mine))
    shares = [r["share_of_posted_revenue_pct"] for r in t["qualification"].values()]
    assert sum(shares) == pytest.approx(100)


def test_streaming_holds_a_few_bytes_per_account_and_gives_the_in_memory_answer(ka) -> None:
    # the streaming builder's answer, with a second pass for the accounts it names ...
    accounts = [ka.validate_facts(a) for a in CORPUS[:500]]
    builder = Portfolio(ka, {"smb_accounts_dropped_pct": 12})
    for f in accounts:
        d = ka.decide_valid(f)
        builder.add(f, d.qualification, d.segments, d.stage)
    asked = []

    def facts_of(positions):
        asked.extend(positions)
        return ((i, accounts[i]) for i in positions)

    streamed = builder.finish(facts_of)
    whole = ka.evaluate_portfolio(CORPUS[:500], {"smb_accounts_dropped_pct": 12})
    whole.pop("results")
    assert streamed == whole
    assert len(asked) <= len(streamed["top_accounts"]) + 5  # only the accounts it names
    # ... and what it keeps per account: 13 bytes of arrays, not the facts or the verdicts
    facts = {"account_id": "X", "annual_spend": 1000.0, "gross_margin_pct": 10.0}
    builder = Portfolio(ka)
    for i in range(1000):  # the counters' keys and the arrays' first blocks
        builder.add({**facts, "account_id": f"W{i}"}, "key_account", ["economic"], None)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _i, q in zip(range(50_000), itertools.cycle(["key_account", "not_key_account"])):
        builder.add(facts, q, ["economic"], "establish")
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown / 50_000 < 40, f"{grown / 50_000:.1f} bytes an account"


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (
            "  unqualified: [not_key_account, insufficient_data]",
            "  unqualified: [not_key_acount, insufficient_data]",
            "ruleset.unknown_qualification",
        ),
        (
            "  smb_dropped: smb_accounts_dropped_pct",
            "  smb_dropped: smb_acounts_dropped_pct",
            "ruleset.portfolio_measure",
        ),
        (  # a metric kaq computes is no input
            "  smb_dropped: smb_accounts_dropped_pct",
            "  smb_dropped: hhi",
            "ruleset.portfolio_measure",
        ),
    ],
)
def test_unqualified_and_smb_dropped_must_name_what_exists(old, new, code) -> None:
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1
    with pytest.raises(RulesetError) as info:
        engine.prepare("key-account.yaml", text.replace(old, new))
    assert [d.code for d in info.value.diagnostics] == [code]


@pytest.mark.parametrize(
    ("spends", "hhi"),
    [
        ([2.225073858507203e-309], 10_000),  # found by schemathesis: a 500 (HHI divided by 0)
        ([1e-300, 1e-300], 5_000),
        ([3e-200, 1e-200], 75**2 + 25**2),
        ([1e-300, 900, 100], 90**2 + 10**2),
        ([900, 100, 0], 90**2 + 10**2),
    ],
)
def test_concentration_of_tiny_revenues_is_computed_not_divided_by_zero(
    spends: list[float], hhi: float
) -> None:
    rs = engine.load_ruleset(MINI)
    try:
        accounts = [
            {"account_id": f"A{i}", "spend": s, "margin_pct": 10, "kind": "company"}
            for i, s in enumerate(spends)
        ]
        m = rs.evaluate_portfolio(accounts)["metrics"]
        assert m["hhi"] == pytest.approx(hhi, rel=1e-9)
    finally:
        rs.close()


def test_portfolio_findings_say_only_the_parts_that_hold(ka) -> None:
    # SMB share above its floor, dropped SMB accounts above the limit: only the drop is said
    # (the SMB share once read "dropped in 12 months: unknown" when it was not given)
    accounts = [{**a, "product_fit": "none", "annual_spend": 1_000_000} for a in CORPUS[:10]]
    out = ka.evaluate_portfolio(accounts, {"smb_accounts_dropped_pct": 12})
    (f,) = [f for f in out["findings"] if f["rule"] == "portfolio.small_customer_neglect"]
    assert [p["part"] for p in f["parts"]] == ["smb_dropped"]
    assert f["message"]["en"].startswith("We dropped 12% of our SMB accounts")
    assert "unknown" not in f["message"]["en"] and "未知" not in f["message"]["zh"]
    out = ka.evaluate_portfolio(accounts)
    assert "portfolio.small_customer_neglect" not in {f["rule"] for f in out["findings"]}


def test_a_share_that_overflows_is_unknown_not_infinite(ka) -> None:
    # profits of +1e6, -1e6 and 1e-302: the known total is positive and tiny, and a share
    # of it overflows; it once stopped the portfolio with "NaN and Infinity are not numbers"
    accounts = [
        {"account_id": "A", "annual_spend": 1e8, "gross_margin_pct": 1},
        {"account_id": "B", "annual_spend": 1e8, "gross_margin_pct": -1},
        {"account_id": "C", "annual_spend": 1e-300, "gross_margin_pct": 1},
    ]
    out = ka.evaluate_portfolio(accounts)
    assert out["metrics"]["top_profit_share_pct"] is None
    assert "portfolio.pareto" not in {f["rule"] for f in out["findings"]}
    assert out["top_accounts"][0]["account_id"] == "A"
    assert out["top_accounts"][0]["share_of_known_profit_pct"] is None
    json.dumps(out, allow_nan=False)  # every number is one JSON carries
