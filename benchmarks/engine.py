"""Engine throughput, one core: full verdicts vs the bare engine vs plain Python.

    .venv/bin/python benchmarks/engine.py [--n 3000] [--repeat 5]

Prints, for the default ruleset on the shipped corpus (corpus/accounts-2000.jsonl):
1. evaluations/s with the full verdict and trace (`PreparedRuleset.evaluate_valid`);
   (after one untimed pass, as in a running service; the message memo is emptied before
   each run, so every account's texts are rendered as for an account never seen; a second
   figure shows the same run with the memo warm);
2. the bare engine floor: the same stage facts asserted into the same durable_rules ruleset,
   C module driven directly, empty actions (only the names of the fired rules are read),
   then retracted as a session does;
3. plain Python: the same conditions evaluated by the Kleene closures, no engine;
and the ratios between them. With --split, also the evaluation alone (no verdict) and
verdicts without texts, and the split of a full verdict's time that follows from them.
Median of --repeat runs (the slowest and fastest run in brackets: on a shared virtual
machine they can differ by a third); CPU time of this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import load_ruleset  # noqa: E402

SID = "bench"


def _stage_facts(rs: Any, facts: dict[str, Any]) -> list[str]:
    """The exact fact texts the evaluator asserts for one account, per engine stage."""
    env = rs.decide_valid(facts).env
    texts = []
    for level, encode, *_ in rs.plan.levels:
        parts = encode(env)
        for stage in rs.engine.stages[level]:
            body = ",".join([f'"kaq_stage":{stage}', *parts])
            texts.append(f'{{"sid":"{SID}","id":"s{len(texts)}",{body}}}')
    return texts


def bare_floor(rs: Any, staged: list[list[str]]) -> float:
    t0 = time.process_time()
    rs.engine.drive_bare(SID, staged)
    elapsed = time.process_time() - t0
    return len(staged) / elapsed


def full(rs: Any, accounts: list[dict[str, Any]], warm: bool = False) -> float:
    if not warm:
        rs.texts.clear()  # messages rendered afresh, as for accounts never seen before
    t0 = time.process_time()
    for facts in accounts:
        rs.evaluate_valid(facts)
    return len(accounts) / (time.process_time() - t0)


def no_advice(rs: Any, accounts: list[dict[str, Any]]) -> float:
    """The full verdict as it was before the advice of policy §8 (issue #11): decision,
    trace, messages and playbook, without what_it_would_take, decisive_missing_facts and
    next_actions. Against `full` it prints what the advice costs."""
    rs.texts.clear()
    decide, explain = rs.decide_valid, rs.explainer.explain
    t0 = time.process_time()
    for facts in accounts:
        explain(decide(facts))
    return len(accounts) / (time.process_time() - t0)


def view_rate(rs: Any, raws: list[dict[str, Any]], view: str) -> tuple[float, float]:
    """(CPU-time, wall-time) accounts/s from parsed facts to one view's plain data.

    Validation, decision and the view (`full`, `summary`, `decision`): what a caller of the
    engine gets for each account, and the yardstick `make bench` holds the paths around it to.
    """
    decide, make = rs.decide, rs.view
    w0, t0 = time.perf_counter(), time.process_time()
    for raw in raws:
        make(decide(raw), view)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    return len(raws) / cpu, len(raws) / wall


def stage_facts(rs: Any, raws: list[dict[str, Any]]) -> list[list[str]]:
    """The stage facts of each account, for `bare_floor`."""
    return [_stage_facts(rs, rs.validate_facts(raw)) for raw in raws]


def run_only(rs: Any, accounts: list[dict[str, Any]]) -> float:
    """The evaluation without verdict assembly: engine, explanation check, outcomes."""
    decide = rs.decide_valid
    t0 = time.process_time()
    for facts in accounts:
        decide(facts)
    return len(accounts) / (time.process_time() - t0)


def no_texts(rs: Any, accounts: list[dict[str, Any]]) -> float:
    """Verdicts without what only people read (messages, comparisons): `kaq diff`'s path."""
    t0 = time.process_time()
    for facts in accounts:
        rs.evaluate_valid(facts, texts=False)
    return len(accounts) / (time.process_time() - t0)


def plain_python(rs: Any, accounts: list[dict[str, Any]]) -> float:
    prog = rs.program
    t0 = time.process_time()
    for facts in accounts:
        env = dict(facts)
        for d in prog.derived:
            v = d.fn(env)
            if v is not None:
                env[d.name] = v
        env.setdefault("qualification", "key_account")
        env.setdefault("score", 0)
        env.setdefault("segments", [])
        for r in prog.rules:
            r.cond_fn(env)
            if r.partly_fn is not None:
                r.partly_fn(env)
    return len(accounts) / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="accounts per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--split", action="store_true", help="also time the run alone and verdicts without texts"
    )
    ap.add_argument("--ruleset", default=str(ROOT / "rulesets" / "key-account.yaml"))
    ap.add_argument("--corpus", default=str(ROOT / "corpus" / "accounts-2000.jsonl"))
    args = ap.parse_args()

    rs = load_ruleset(args.ruleset)
    raw = [json.loads(line) for line in Path(args.corpus).read_text().splitlines() if line.strip()]
    accounts = [rs.validate_facts(a) for a in raw]
    while len(accounts) < args.n:
        accounts += accounts
    accounts = accounts[: args.n]
    staged = [_stage_facts(rs, a) for a in accounts]
    engine_rules = rs.engine_rule_count
    fired = sum(
        1 for a in accounts[:200] for t in rs.evaluate_valid(a)["trace"] if t["outcome"] == "fired"
    ) / min(200, len(accounts))

    # one pass first, as a running service has made: renderers decide their memo use, and
    # the number-format caches fill (each timed run still starts with an empty text memo)
    for a in accounts:
        rs.evaluate_valid(a)
    results: dict[str, list[float]] = {
        "full": [],
        "noadvice": [],
        "warm": [],
        "bare": [],
        "python": [],
    }
    for _ in range(args.repeat):
        results["full"].append(full(rs, accounts))
        results["noadvice"].append(no_advice(rs, accounts))
        results["warm"].append(full(rs, accounts, warm=True))
        results["bare"].append(bare_floor(rs, staged))
        results["python"].append(plain_python(rs, accounts))
        if args.split:
            results.setdefault("run", []).append(run_only(rs, accounts))
            results.setdefault("notexts", []).append(no_texts(rs, accounts))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"ruleset {rs.name} {rs.version}: {len(rs.rules)} rules -> {engine_rules} engine rules "
        f"in {rs.level_count} stages; {fired:.1f} rules fire per account on average"
    )
    print(
        f"accounts: {len(accounts)} from {Path(args.corpus).name}; median of {args.repeat} runs, "
        "CPU time, one core"
    )

    def line(label: str, key: str) -> None:
        m, lo, hi = med[key], min(results[key]), max(results[key])
        print(f"  {label:<28}: {m:>9,.0f} eval/s  ({1e6 / m:.0f} µs)  [runs {lo:,.0f}-{hi:,.0f}]")

    line("full verdict with trace", "full")
    line("  same, without the advice", "noadvice")
    line("  same, message memo warm", "warm")
    line("bare engine floor", "bare")
    line("plain Python conditions", "python")
    if args.split:
        line("decide only (no verdict)", "run")
        line("verdict without texts", "notexts")
        run_us, notexts_us, full_us = (1e6 / med[k] for k in ("run", "notexts", "full"))
        print(
            f"  {'split of the full verdict':<28}: evaluation {run_us:.0f} µs (engine floor "
            f"{1e6 / med['bare']:.0f}), verdict structure {notexts_us - run_us:.0f} µs, "
            f"messages and comparisons {full_us - notexts_us:.0f} µs"
        )
    ratios = sorted(a / f for f, a in zip(results["full"], results["noadvice"], strict=True))
    print(
        f"  {'advice: full / no advice':<28}: {statistics.median(ratios):.2f}x time "
        f"[runs {ratios[0]:.2f}-{ratios[-1]:.2f}] (issue #11: within 2x)"
    )
    print(f"  {'full / bare engine':<28}: {med['full'] / med['bare']:.2f}")
    print(f"  {'full / plain Python':<28}: {med['full'] / med['python']:.2f}")
    print(f"  {'bare engine / Python':<28}: {med['bare'] / med['python']:.2f}")
    verdict = "met" if med["full"] >= 5000 else "NOT met"
    print(f"  target: >= 5,000 eval/s full verdict with trace: {verdict} (median)")
    rs.close()


if __name__ == "__main__":
    main()
