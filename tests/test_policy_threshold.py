"""Sales ops change a threshold in YAML and verdicts follow, with no code change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine import load_rulesets

ROOT = Path(__file__).resolve().parents[1]

# the state bank scores 100; without pays_back (15), profit_contribution (10) and
# seller_match (5) it scores exactly 70
ACCOUNT_AT_70 = json.loads((ROOT / "examples" / "state-bank-head-office.json").read_text("utf-8"))


def _score_70(rs) -> dict:
    facts = dict(ACCOUNT_AT_70)
    facts.update(
        {"acquisition_cost": 900_000_000, "profit_rank_pct": 50, "seller_scale_match": False}
    )
    verdict = rs.evaluate(facts)
    assert verdict["score"] == 70, verdict["criteria"]
    return verdict


def test_raising_the_key_account_score_in_yaml_moves_an_account_at_70(tmp_path: Path) -> None:
    copy = tmp_path / "rulesets"
    shutil.copytree(ROOT / "rulesets", copy)
    path = copy / "key-account.yaml"
    text = path.read_text(encoding="utf-8")
    head, sep, tail = text.partition("  key_account_min_score:")
    assert sep and "value: 70" in tail.split("\n", 2)[1]
    path.write_text(head + sep + tail.replace("value: 70", "value: 75", 1), encoding="utf-8")

    before = load_rulesets(ROOT / "rulesets")["key-account"]
    after = load_rulesets(copy)["key-account"]
    try:
        assert _score_70(before)["qualification"] == "key_account"
        moved = _score_70(after)
        assert moved["qualification"] == "potential_key_account"
        assert after.digest != before.digest
        assert "75" in moved["summary"]["en"]
    finally:
        before.close()
        after.close()
