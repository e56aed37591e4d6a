"""`analyze`: both sides loaded, every account evaluated once per side, the report built as
the accounts stream by (in this process, or in worker processes a chunk at a time)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from .changes import ruleset_changes
from .compare import Comparison, compact
from .sides import ImpactError, RulesetSide, doc_of

CHUNK = 500  # accounts a worker evaluates per task: large enough to amortise the pickling
WINDOW = 3  # chunks in flight per worker: the bound on what the parallel path holds


def _evaluate(rs: Any, account: Mapping[str, Any]) -> Any:
    """The account's compact verdict, or the text of the engine error it raised."""
    from engine.errors import KaqError

    try:
        return compact(rs.evaluate(account, texts=False))
    except KaqError as e:
        return compact(e)


# Worker processes load both sides once (in the initializer) and then evaluate chunks.
_WORKER_SETS: dict[str, Any] = {}


def _worker_init(sides: dict[str, dict[str, str]], name: str) -> None:
    from engine import load_rulesets_from_sources

    for key, sources in sides.items():
        _WORKER_SETS[key] = load_rulesets_from_sources(sources)[name]


def _worker_evaluate(keys: tuple[str, ...], chunk: list[Mapping[str, Any]]) -> list[tuple]:
    sets = [_WORKER_SETS[k] for k in keys]
    return [tuple(_evaluate(rs, a) for rs in sets) for a in chunk]


def _chunks(accounts: Iterator[Mapping[str, Any]], size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(accounts, size)):
        yield chunk


def _pairs_parallel(
    sides: dict[str, RulesetSide], name: str, accounts: Iterator[Mapping[str, Any]], jobs: int
) -> Iterator[tuple[Mapping[str, Any], tuple]]:
    """(account, verdicts per side) in corpus order, from `jobs` spawned processes (spawn:
    durable_rules keeps C state), with at most `jobs * WINDOW` chunks in flight."""
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    keys = tuple(sides)
    sources = {key: side.sources for key, side in sides.items()}
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(sources, name),
    ) as pool:
        pending: deque[tuple[list, Future]] = deque()
        for chunk in _chunks(accounts, CHUNK):
            pending.append((chunk, pool.submit(_worker_evaluate, keys, chunk)))
            if len(pending) >= jobs * WINDOW:
                done, fut = pending.popleft()
                yield from zip(done, fut.result(), strict=True)
        while pending:
            done, fut = pending.popleft()
            yield from zip(done, fut.result(), strict=True)


def _pairs_known(
    sets: list[Any], accounts: Iterator[Mapping[str, Any]], known: MutableMapping[str, list[Any]]
) -> Iterator[tuple[Mapping[str, Any], tuple]]:
    """(account, verdicts per side), a side's verdicts taken from `known` when it has them."""
    cached = [known.get(rs.digest) for rs in sets]
    fresh: list[list[Any]] = [[] for _ in sets]
    n = 0
    for i, account in enumerate(accounts):
        verdicts = []
        for k, rs in enumerate(sets):
            hit = cached[k]
            v = hit[i] if hit is not None and i < len(hit) else _evaluate(rs, account)
            verdicts.append(v)
            if hit is None:
                fresh[k].append(v)
        n = i + 1
        yield account, tuple(verdicts)
    for k, rs in enumerate(sets):
        if cached[k] is None:
            known[rs.digest] = fresh[k]
        elif len(cached[k] or ()) != n:  # another corpus than the one cached: forget it
            known.pop(rs.digest, None)


def default_jobs() -> int:
    """Worker processes for a large corpus: the CPUs this process may use, at most 8.

    On one or two CPUs a single process wins: spawning workers and loading the
    rulesets in each costs more than the second CPU gives back.
    """
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 8) if cpus >= 4 else 1


def _load(side: RulesetSide, name: str) -> Any:
    from engine import load_rulesets_from_sources

    sets = load_rulesets_from_sources(side.sources)
    if name not in sets:
        known = ", ".join(sorted(sets)) or "none"
        raise ImpactError(f"{side.label}: no ruleset named {name!r} (found: {known})")
    return sets[name]


def analyze(
    base: RulesetSide,
    head: RulesetSide,
    accounts: Iterable[Mapping[str, Any]],
    *,
    ruleset: str = "key-account",
    top: int = 10,
    jobs: int = 1,
    parallel_min: int = 2000,
    known: MutableMapping[str, list[Any]] | None = None,
    prepared: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load both sides, evaluate every account once per side, and report the impact.

    `accounts` may be any iterable (`iter_corpus` streams a file): it is read once, and
    what is held does not grow with it (see `Comparison`). With `jobs` > 1 and at least
    `parallel_min` accounts, the evaluation runs in that many worker processes. When both
    sides hold the same ruleset source, the accounts are evaluated once. Raises
    `ImpactError`, or the engine's `RulesetError` when a side does not load.

    `known` (ruleset digest -> compact verdicts of these very `accounts`, in order) is read
    for a side already evaluated and filled with a side evaluated here, once all of the
    accounts went through: the studio evaluates the served ruleset on its corpus once, not
    at every keystroke. It holds the verdicts, so it is for corpora that fit in memory;
    with it the evaluation runs in this process.

    `prepared` ({"base": ruleset, "head": ruleset}, either or both) gives a side already
    prepared from that side's sources (the caller keeps and closes it): not compiled again.
    """
    started = time.perf_counter()
    given = dict(prepared or {})
    base_rs = given.get("base") or _load(base, ruleset)
    try:
        head_rs = given.get("head") or _load(head, ruleset)
    except BaseException:
        if "base" not in given:
            base_rs.close()
        raise
    loaded = time.perf_counter()
    try:
        changes = ruleset_changes(
            doc_of(base, base_rs, ruleset) or {},
            doc_of(head, head_rs, ruleset) or {},
            head_rs.names_read(),
        )
        changed_params = {
            p["name"]: (p.get("base"), p.get("head")) for p in changes["params_changed"]
        }
        comparison = Comparison(
            top=top,
            changed_params=changed_params,
            rule_params={r["id"]: r["reads_changed"] for r in changes["rules_changed"]},
            decision_params=changes["decision"]["reads_changed"],
            order=head_rs.qualification_order(),
        )
        same = base_rs.digest == head_rs.digest
        sides = {"base": base} if same else {"base": base, "head": head}
        stream = iter(accounts)
        first = list(itertools.islice(stream, parallel_min)) if jobs > 1 and known is None else []
        parallel = jobs > 1 and known is None and len(first) >= parallel_min
        pairs: Iterable[tuple[Mapping[str, Any], tuple]]
        if known is not None:
            pairs = _pairs_known(
                [base_rs] if same else [base_rs, head_rs], itertools.chain(first, stream), known
            )
        elif parallel:
            pairs = _pairs_parallel(sides, ruleset, itertools.chain(first, stream), jobs)
        else:
            loaded_sets = [base_rs] if same else [base_rs, head_rs]
            pairs = (
                (a, tuple(_evaluate(rs, a) for rs in loaded_sets))
                for a in itertools.chain(first, stream)
            )
        for account, verdicts in pairs:
            comparison.add(account, verdicts[0], verdicts[-1])
    finally:
        for key, rs in (("base", base_rs), ("head", head_rs)):
            if key not in given:
                rs.close()
    evaluated = time.perf_counter()
    verdicts_report = comparison.report()
    finished = time.perf_counter()
    n = comparison.count
    return {
        "ruleset": ruleset,
        "base": _side_info(base, base_rs),
        "head": _side_info(head, head_rs),
        "changes": changes,
        **verdicts_report,
        "elapsed_seconds": {
            "load": round(loaded - started, 3),
            "evaluate": round(evaluated - loaded, 3),
            "total": round(finished - started, 3),
        },
        "evaluations": len(sides) * n,
        "jobs": jobs if parallel else 1,
        "evaluations_per_second": round(len(sides) * n / max(evaluated - loaded, 1e-9), 1),
    }


def _side_info(side: RulesetSide, rs: Any) -> dict[str, Any]:
    return {
        "label": side.label,
        "revision": side.revision,
        "version": getattr(rs, "version", None),
        "digest": getattr(rs, "digest", None),
    }
