"""Evaluation as a service: the engine's decision, in the view asked for, logged first.

Routes call these methods and shape nothing else. On the engine thread each account is
decided, shown in its view (`full`, `summary` or `decision`) and serialised once, to the
bytes of the answer (orjson), beside the compact log entry (its facts and the ruleset's
digest); the decision log's thread commits the entries, and only then is the answer sent.
`GET /v1/decisions/{id}` makes the full verdict again from the logged facts and the
ruleset's stored source: the same answer, whatever view was asked for then.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect

from engine import PreparedRuleset
from engine.errors import RulesetError

from . import engine_thread
from .decision_log import DecisionLog, Entry, RulesetSource, facts_json
from .errors import ApiError, problem_for
from .ids import new_decision_id
from .metrics import Metrics
from .registry import Registry

log = logging.getLogger("kaq.api")

try:
    KAQ_VERSION = importlib.metadata.version("kaq")
except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    KAQ_VERSION = "dev"

CACHED_RULESETS = 4  # rulesets of older digests kept prepared for GET /v1/decisions/{id}


@dataclass
class Item:
    """One account of a batch: its position and raw facts, or why it never reached the engine."""

    index: int
    facts: Any
    error: BaseException | None = None


def account_id_of(raw: Any) -> str | None:
    """The account id a client sent, if it is a string (for error entries)."""
    if isinstance(raw, Mapping):
        value = raw.get("account_id")
        if isinstance(value, str):
            return value
    return None


def dump(data: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: one pass, straight to bytes)."""
    return orjson.dumps(data)


def _answer(rs: PreparedRuleset, facts: Any, view: str) -> tuple[bytes, Entry]:
    """Decide one account and show it in `view`: the answer's bytes and its log entry."""
    started = time.perf_counter()
    decision = rs.decide(facts)
    shown = rs.view(decision, view)
    decision_id = new_decision_id()
    body = dump({"decision_id": decision_id, **shown})
    ms = (time.perf_counter() - started) * 1000
    entry = Entry(
        decision_id=decision_id,
        ruleset_digest=rs.digest,
        account_id=decision.account_id,
        qualification=decision.qualification,
        score=decision.score,
        view=view,
        duration_ms=round(ms, 3),
        kaq_version=KAQ_VERSION,
        facts=facts_json(facts),
    )
    return body, entry


def _answer_all(
    rs: PreparedRuleset, facts: Sequence[Any], view: str
) -> list[tuple[bytes, Entry] | Exception]:
    out: list[tuple[bytes, Entry] | Exception] = []
    for raw in facts:
        try:
            out.append(_answer(rs, raw, view))
        except Exception as exc:  # reported in the item's place; the batch goes on
            out.append(exc)
    return out


def _recompute(rs: PreparedRuleset, facts: Any, decision_id: str) -> dict[str, Any]:
    """The full verdict of logged facts, as it was answered (decision id first)."""
    return {"decision_id": decision_id, **rs.evaluate(facts)}


def _points(score: float | None) -> str:
    return "no score" if score is None else f"{score:g} points"


class _Unavailable(Exception):
    """The ruleset of a logged decision cannot be prepared again (why: the message)."""


Checkpoint = Callable[[], Awaitable[None]]
"""Awaited between the steps of a batch; raises to stop it (e.g. the client has left)."""


async def _go_on() -> None:
    return None


def _retrieved(task: asyncio.Task[None]) -> None:
    """Read a background commit's outcome so that a failure is logged once, not lost."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None or isinstance(exc, ClientDisconnect):
        return  # committed, or the client left: there was nobody to answer
    log.warning("a chunk's commit failed after its batch had stopped: %s", exc)


class Service:
    """Evaluates accounts against the registry's rulesets and logs every decision."""

    def __init__(self, registry: Registry, decision_log: DecisionLog, metrics: Metrics):
        self.registry = registry
        self.log = decision_log
        self.metrics = metrics
        self._older: OrderedDict[str, PreparedRuleset] = OrderedDict()  # digest -> ruleset
        self._older_lock = asyncio.Lock()

    async def _keep_source(self, rs: PreparedRuleset) -> None:
        """The ruleset's source is in the log before any decision it made (once per digest)."""
        await self.log.store_rulesets([RulesetSource(rs.digest, rs.name, rs.version, rs.source)])

    def _count(self, rs: PreparedRuleset, entries: Sequence[Entry]) -> None:
        # one labels() lookup per qualification of the chunk, not per decision (it takes a
        # lock and builds a key: about 4 us, 2 % of a decision-view batch)
        for qualification, n in Counter(str(e.qualification) for e in entries).items():
            self.metrics.evaluations.labels(rs.name, qualification).inc(n)

    def _count_error(
        self, rs: PreparedRuleset, exc: BaseException, *, log: bool = True
    ) -> dict[str, Any]:
        body = problem_for(exc, log=log)
        self.metrics.evaluation_errors.labels(rs.name, body["type"].rsplit(":", 1)[-1]).inc()
        return body

    async def evaluate(self, ruleset: str, facts: Any, view: str = "full") -> bytes:
        """One answer (its bytes) with its decision id, durably logged."""
        with self.registry.acquire() as snap:
            rs = snap.get(ruleset)
            try:
                body, entry = await engine_thread.run(_answer, rs, facts, view)
            except Exception as exc:
                self._count_error(rs, exc, log=False)  # the error handler logs it once
                raise
            await self._keep_source(rs)
            await self.log.write([entry])
            self._count(rs, [entry])
            return body

    async def evaluate_chunk(
        self,
        rs: PreparedRuleset,
        items: Sequence[Item],
        checkpoint: Checkpoint = _go_on,
        view: str = "full",
    ) -> list[bytes]:
        """The answers of a chunk in order (each one's bytes: a verdict or an error entry),
        its decisions logged at once.

        `checkpoint()` is awaited before the evaluation and before the logging; what it
        raises (the client has left) stops the chunk there, before more work is done.
        """
        results, entries = await self._decide_chunk(rs, items, checkpoint, view)
        await self._log_chunk(rs, entries, checkpoint)
        return results

    async def _decide_chunk(
        self, rs: PreparedRuleset, items: Sequence[Item], checkpoint: Checkpoint, view: str
    ) -> tuple[list[bytes], list[Entry]]:
        """A chunk decided on the engine thread: its answers in order, and what to log."""
        await checkpoint()
        todo = [item for item in items if item.error is None]
        outcomes = await engine_thread.run(_answer_all, rs, [i.facts for i in todo], view)
        by_index: dict[int, tuple[bytes, Entry] | BaseException] = {
            item.index: outcome for item, outcome in zip(todo, outcomes, strict=True)
        }
        results: list[bytes] = []
        entries: list[Entry] = []
        for item in items:
            outcome = item.error if item.error is not None else by_index[item.index]
            if isinstance(outcome, BaseException):
                results.append(
                    dump(
                        {
                            "index": item.index,
                            "account_id": account_id_of(item.facts),
                            "error": self._count_error(rs, outcome),
                        }
                    )
                )
            else:
                body, entry = outcome
                entries.append(entry)
                results.append(body)
        return results, entries

    async def _log_chunk(
        self, rs: PreparedRuleset, entries: Sequence[Entry], checkpoint: Checkpoint
    ) -> None:
        """A chunk's decisions durably logged (after a last check that someone is waiting)."""
        await checkpoint()
        if entries:
            await self._keep_source(rs)
        await self.log.write(entries)
        self._count(rs, entries)

    async def evaluate_batch(
        self,
        ruleset: str,
        items: Sequence[Item],
        chunk_size: int,
        checkpoint: Checkpoint = _go_on,
        view: str = "full",
    ) -> bytes:
        """A whole JSON batch, in order: the bytes of `{"results": [...]}`."""
        with self.registry.acquire() as snap:
            rs = snap.get(ruleset)

            async def chunks() -> AsyncIterator[list[Item]]:
                for start in range(0, len(items), chunk_size):
                    yield list(items[start : start + chunk_size])

            parts: list[bytes] = []
            async for results in self._pipeline(rs, chunks(), checkpoint, view):
                parts.extend(results)
            return b'{"results":[' + b",".join(parts) + b"]}"

    async def stream_batch(
        self,
        rs: PreparedRuleset,
        items: AsyncIterator[Item],
        chunk_size: int,
        checkpoint: Checkpoint = _go_on,
        view: str = "full",
    ) -> AsyncIterator[list[bytes]]:
        """Chunks of answers as the items arrive; each chunk is logged before it is yielded."""

        async def chunks() -> AsyncIterator[list[Item]]:
            chunk: list[Item] = []
            async for item in items:
                chunk.append(item)
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

        async for results in self._pipeline(rs, chunks(), checkpoint, view):
            yield results

    async def _pipeline(
        self,
        rs: PreparedRuleset,
        chunks: AsyncIterator[list[Item]],
        checkpoint: Checkpoint,
        view: str,
    ) -> AsyncIterator[list[bytes]]:
        """Each chunk's answers, in order, once that chunk is durably logged.

        While one chunk's transaction commits (its fsync: time the engine would otherwise
        sit idle), the next chunk is read and decided. At most two chunks are held. If
        anything stops the batch (the client left, the log failed), nothing more is decided,
        and a chunk whose commit is still running is left to finish on its own: never
        cancelled half-way, never acknowledged.
        """
        pending: tuple[list[bytes], asyncio.Task[None]] | None = None
        try:
            async for chunk in chunks:
                results, entries = await self._decide_chunk(rs, chunk, checkpoint, view)
                commit = asyncio.ensure_future(self._log_chunk(rs, entries, checkpoint))
                previous, pending = pending, (results, commit)
                if previous is not None:
                    await previous[1]
                    yield previous[0]
            if pending is not None:
                last, pending = pending, None
                await last[1]
                yield last[0]
        finally:
            if pending is not None:
                # stopped between a chunk's decision and its acknowledgement: let the
                # commit finish (or fail) on its own; its outcome is not anyone's answer
                pending[1].add_done_callback(_retrieved)

    async def portfolio(self, ruleset: str, accounts: list[Any], portfolio: Any) -> bytes:
        """The portfolio view (policy §7), every account's full verdict logged."""
        from engine.runtime.portfolio import evaluate_portfolio

        with self.registry.acquire() as snap:
            rs = snap.get(ruleset)
            started = time.perf_counter()
            out = await engine_thread.run(evaluate_portfolio, rs, accounts, portfolio)
            per_account = (time.perf_counter() - started) * 1000 / max(1, len(accounts))
            entries = []
            results = []
            for facts, verdict in zip(accounts, out["results"], strict=True):
                decision_id = new_decision_id()
                results.append({"decision_id": decision_id, **verdict})
                entries.append(
                    Entry(
                        decision_id=decision_id,
                        ruleset_digest=rs.digest,
                        account_id=verdict.get("account_id"),
                        qualification=verdict.get("qualification"),
                        score=verdict.get("score"),
                        view="full",
                        duration_ms=round(per_account, 3),
                        kaq_version=KAQ_VERSION,
                        facts=facts_json(facts),
                    )
                )
            if entries:
                await self._keep_source(rs)
            await self.log.write(entries)
            self._count(rs, entries)
            return dump({**out, "results": results})

    # -- the log, read back
    async def decision(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision with its full verdict, made again from the logged facts; an
        old row (a whole verdict stored) as it was; or None."""
        found = await self.log.get(decision_id)
        if found is None or "verdict" in found:
            return found
        digest = found["ruleset_digest"]
        meta = found.get("ruleset") or {}
        verdict: dict[str, Any] | None = None
        missing = None
        with self.registry.acquire() as snap:
            rs = next((r for r in snap.rulesets.values() if r.digest == digest), None)
            if rs is None:
                try:
                    rs = await self._older_ruleset(digest)
                except _Unavailable as exc:
                    missing = str(exc)
            if rs is not None:
                verdict = await engine_thread.run(_recompute, rs, found["facts"], decision_id)
        out = {
            "decision_id": decision_id,
            "created_at": found["created_at"],
            "ruleset": {"name": meta.get("name"), "version": meta.get("version"), "digest": digest},
            "account_id": found["account_id"],
            "qualification": found["qualification"],
            "duration_ms": found["duration_ms"],
            "view": found["view"],
            "kaq_version": found["kaq_version"],
            "facts": found["facts"],
            "verdict": verdict,
        }
        if verdict is None:
            # The record stands (facts and decision as logged); its explanation cannot be
            # made again without the ruleset that decided it.
            out["warning"] = (
                f"the verdict cannot be shown again: {missing}; the facts and the decision "
                f"({found['qualification']}, {_points(found['score'])}) are as logged"
            )
        elif (verdict["qualification"], verdict["score"]) != (
            found["qualification"],
            found["score"],
        ):
            # the same facts and ruleset decide the same way; only another kaq could differ
            log.warning(
                "decision %s made again differs from the one logged (kaq %s, now %s)",
                decision_id,
                found["kaq_version"],
                KAQ_VERSION,
            )
            logged = f"{found['qualification']} with {_points(found['score'])}"
            out["warning"] = (
                f"made again by kaq {KAQ_VERSION}; the decision logged by kaq "
                f"{found['kaq_version']} was {logged}"
            )
        return out

    async def _older_ruleset(self, digest: str) -> PreparedRuleset:
        """A ruleset no longer served, prepared again from its stored source (a few kept)."""
        async with self._older_lock:
            rs = self._older.get(digest)
            if rs is not None:
                self._older.move_to_end(digest)
                return rs
            source = await self.log.ruleset(digest)
            if source is None:
                raise _Unavailable(f"the source of ruleset {digest} is not in the decision log")
            from engine.runtime.loader import bind_rulesets, compile_rulesets

            try:
                compiled = await asyncio.to_thread(
                    compile_rulesets, {f"{source.name}.yaml": source.source}
                )
                sets = await engine_thread.run(bind_rulesets, compiled)
            except RulesetError as exc:  # written by a kaq whose language this one lacks
                raise _Unavailable(
                    f"ruleset {source.name} version {source.version} ({digest}) no longer "
                    f"loads: {' '.join(str(exc).split())}"
                ) from None
            rs = sets[source.name]
            self._older[digest] = rs
            while len(self._older) > CACHED_RULESETS:
                _old_digest, old = self._older.popitem(last=False)
                engine_thread.submit(old.close)
            return rs

    async def close(self) -> None:
        """Free the rulesets prepared for reading the log back."""
        for rs in self._older.values():
            await engine_thread.run(rs.close)
        self._older.clear()


__all__ = ["ApiError", "Item", "Service", "account_id_of", "dump"]
