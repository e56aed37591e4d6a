"""Digests of the default ruleset's verdicts on the examples and the shipped corpus.

`python tests/golden/verdicts.py > tests/golden/verdicts.sha256` writes them;
`tests/test_golden_verdicts.py` checks that every verdict is still byte-identical. A change
of the policy or of its texts changes them on purpose: regenerate them in the same commit
and say why; a refactoring must leave them as they are.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "examples").glob("*.json")),
    ROOT / "examples" / "accounts.jsonl",
    ROOT / "corpus" / "accounts-2000.jsonl",
]


def accounts() -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, facts) of every account the digests cover, in order."""
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix == ".json":
            yield rel, json.loads(path.read_text(encoding="utf-8"))
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                yield f"{rel}:{n}", json.loads(line)


def digest(verdict: Any) -> str:
    """The first 16 hex digits of the sha256 of the verdict as compact UTF-8 JSON.

    The ruleset's own digest (the sha256 of its source text) is left out: a change of the
    ruleset file that changes no verdict, such as naming the portfolio's measures, changes
    it, and it is checked on its own by the ruleset tests.
    """
    verdict = {**verdict, "ruleset": {**verdict["ruleset"], "digest": "sha256:-"}}
    text = json.dumps(verdict, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def lines(evaluate: Any) -> Iterator[str]:
    for label, facts in accounts():
        yield f"{label} {digest(evaluate(facts))}"


def main() -> None:
    sys.path.insert(0, str(Path.cwd()))
    from engine import load_ruleset

    rs = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    for line in lines(rs.evaluate):
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
