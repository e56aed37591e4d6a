"""Benchmark `kaq diff`: 10,000 synthetic accounts, key-account threshold raised 70 -> 75.

    .venv/bin/python benchmarks/diff.py [--n 10000] [--seed 42]

Prints the elapsed seconds (load, evaluation of both sides, total) and accounts/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.tools.corpus import generate_accounts  # noqa: E402
from engine.tools.impact import analyze, default_jobs, read_side  # noqa: E402


def _raise_threshold(text: str, old: int, new: int) -> str:
    head, sep, tail = text.partition("  key_account_min_score:")
    if not sep:
        raise SystemExit("rulesets/key-account.yaml has no key_account_min_score param")
    return head + sep + tail.replace(f"value: {old}", f"value: {new}", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    args = parser.parse_args()

    accounts = generate_accounts(args.n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        source = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
        (Path(tmp) / "key-account.yaml").write_text(
            _raise_threshold(source, 70, 75), encoding="utf-8"
        )
        started = time.perf_counter()
        report = analyze(
            read_side(str(ROOT / "rulesets")), read_side(tmp), accounts, jobs=args.jobs
        )
        elapsed = time.perf_counter() - started

    e = report["elapsed_seconds"]
    print(f"accounts:            {args.n:,}")
    print(f"changed verdicts:    {report['changed']:,}")
    print(f"moved qualification: {report['qualification_moved']:,}")
    print(f"load:                {e['load']:.2f} s")
    print(f"evaluate (2 sides):  {e['evaluate']:.2f} s")
    print(f"total:               {elapsed:.2f} s")
    print(f"accounts/s:          {args.n / elapsed:,.0f} (diffed, both sides)")
    print(f"evaluations/s:       {report['evaluations_per_second']:,.0f}")
    print(f"worker processes:    {report['jobs']}")


if __name__ == "__main__":
    main()
