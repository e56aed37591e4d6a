"""Evaluation as a service: engine verdict + decision id, logged before it is returned.

Routes call these methods and shape nothing else; the engine runs on the
engine thread, the decision log on its own thread.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import engine_thread
from .decision_log import Decision, DecisionLog
from .errors import ApiError, problem_for
from .ids import new_decision_id
from .metrics import Metrics
from .registry import Registry


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


def _evaluate_timed(rs: Any, facts: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    verdict = rs.evaluate(facts)
    return verdict, (time.perf_counter() - started) * 1000


def _evaluate_items(
    rs: Any, facts: Sequence[Any]
) -> list[tuple[dict[str, Any], float] | Exception]:
    out: list[tuple[dict[str, Any], float] | Exception] = []
    for raw in facts:
        try:
            out.append(_evaluate_timed(rs, raw))
        except Exception as exc:  # reported in the item's place; the batch goes on
            out.append(exc)
    return out


Checkpoint = Callable[[], Awaitable[None]]
"""Awaited between the steps of a batch; raises to stop it (e.g. the client has left)."""


async def _go_on() -> None:
    return None


class Service:
    """Evaluates accounts against the registry's rulesets and logs every verdict."""

    def __init__(self, registry: Registry, decision_log: DecisionLog, metrics: Metrics):
        self.registry = registry
        self.log = decision_log
        self.metrics = metrics

    def _decision(self, rs: Any, facts: Any, verdict: dict[str, Any], ms: float) -> Decision:
        decision_id = new_decision_id()
        body = {"decision_id": decision_id, **verdict}
        return Decision(
            decision_id=decision_id,
            ruleset_name=rs.name,
            ruleset_version=rs.version,
            ruleset_digest=rs.digest,
            account_id=verdict.get("account_id"),
            qualification=verdict.get("qualification"),
            duration_ms=round(ms, 3),
            facts=facts,
            verdict=body,
        )

    def _count(self, rs: Any, decisions: Sequence[Decision]) -> None:
        for d in decisions:
            self.metrics.evaluations.labels(rs.name, str(d.qualification)).inc()

    def _count_error(self, rs: Any, exc: BaseException, *, log: bool = True) -> dict[str, Any]:
        body = problem_for(exc, log=log)
        self.metrics.evaluation_errors.labels(rs.name, body["type"].rsplit(":", 1)[-1]).inc()
        return body

    async def evaluate(self, ruleset: str, facts: Any) -> dict[str, Any]:
        """One verdict with its decision id, durably logged."""
        with self.registry.acquire() as snap:
            rs = snap.get(ruleset)
            try:
                verdict, ms = await engine_thread.run(_evaluate_timed, rs, facts)
            except Exception as exc:
                self._count_error(rs, exc, log=False)  # the error handler logs it once
                raise
            decision = self._decision(rs, facts, verdict, ms)
            await self.log.write([decision])
            self._count(rs, [decision])
            return dict(decision.verdict)

    async def evaluate_chunk(
        self, rs: Any, items: Sequence[Item], checkpoint: Checkpoint = _go_on
    ) -> list[dict[str, Any]]:
        """Results of a chunk in order (verdicts or error entries), its verdicts logged at once.

        `checkpoint()` is awaited before the evaluation and before the logging; what it
        raises (the client has left) stops the chunk there, before more work is done.
        """
        await checkpoint()
        todo = [item for item in items if item.error is None]
        outcomes = await engine_thread.run(_evaluate_items, rs, [i.facts for i in todo])
        by_index: dict[int, tuple[dict[str, Any], float] | BaseException] = {
            item.index: outcome for item, outcome in zip(todo, outcomes, strict=True)
        }
        results: list[dict[str, Any]] = []
        decisions: list[Decision] = []
        for item in items:
            outcome = item.error if item.error is not None else by_index[item.index]
            if isinstance(outcome, BaseException):
                results.append(
                    {
                        "index": item.index,
                        "account_id": account_id_of(item.facts),
                        "error": self._count_error(rs, outcome),
                    }
                )
            else:
                decision = self._decision(rs, item.facts, *outcome)
                decisions.append(decision)
                results.append(decision.verdict)  # type: ignore[arg-type]
        await checkpoint()
        await self.log.write(decisions)
        self._count(rs, decisions)
        return results

    async def evaluate_batch(
        self, ruleset: str, items: Sequence[Item], chunk_size: int, checkpoint: Checkpoint = _go_on
    ) -> list[dict[str, Any]]:
        """A whole JSON batch, in order."""
        with self.registry.acquire() as snap:
            rs = snap.get(ruleset)
            results: list[dict[str, Any]] = []
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                results.extend(await self.evaluate_chunk(rs, chunk, checkpoint))
            return results

    async def stream_batch(
        self,
        rs: Any,
        items: AsyncIterator[Item],
        chunk_size: int,
        checkpoint: Checkpoint = _go_on,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Chunks of results as the items arrive; each chunk is logged before it is yielded."""
        chunk: list[Item] = []
        async for item in items:
            chunk.append(item)
            if len(chunk) >= chunk_size:
                yield await self.evaluate_chunk(rs, chunk, checkpoint)
                chunk = []
        if chunk:
            yield await self.evaluate_chunk(rs, chunk, checkpoint)

    async def portfolio(self, ruleset: str, accounts: list[Any], portfolio: Any) -> dict[str, Any]:
        """The portfolio view (policy §7), every account's verdict logged."""
        from engine.runtime.portfolio import evaluate_portfolio

        with self.registry.acquire() as snap:
            rs = snap.get(ruleset)
            started = time.perf_counter()
            out = await engine_thread.run(evaluate_portfolio, rs, accounts, portfolio)
            per_account = (time.perf_counter() - started) * 1000 / max(1, len(accounts))
            decisions = [
                self._decision(rs, facts, verdict, per_account)
                for facts, verdict in zip(accounts, out["results"], strict=True)
            ]
            await self.log.write(decisions)
            self._count(rs, decisions)
            return {**out, "results": [d.verdict for d in decisions]}

    async def decision(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision, or None."""
        return await self.log.get(decision_id)


__all__ = ["ApiError", "Item", "Service", "account_id_of"]
