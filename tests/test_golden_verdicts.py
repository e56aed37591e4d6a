"""Every verdict on the examples and the shipped corpus is byte-identical to its digest.

The digests (`tests/golden/verdicts.sha256`) were written by `tests/golden/verdicts.py`;
regenerate them only with a change that means to change verdicts, and say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "golden"))

import verdicts as golden  # noqa: E402

from engine import load_ruleset  # noqa: E402


def test_every_verdict_is_byte_identical_to_its_digest() -> None:
    want = (ROOT / "tests" / "golden" / "verdicts.sha256").read_text(encoding="utf-8").split("\n")
    rs = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    try:
        got = list(golden.lines(rs.evaluate))
    finally:
        rs.close()
    assert len(got) == len([w for w in want if w]) > 2000
    changed = [g for g, w in zip(got, want, strict=False) if g != w]
    assert not changed, f"{len(changed)} verdicts changed, first: {changed[:3]}"
