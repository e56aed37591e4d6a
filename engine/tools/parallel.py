"""Work over a stream of items in worker processes, in order, with bounded memory.

durable_rules keeps its state in C per process, so parallel evaluation means processes
(spawned, so that none inherits the parent's engine state), each preparing its ruleset
once in an initializer. `ordered` keeps at most `window` chunks in flight and yields the
results chunk by chunk in the input's order: memory does not grow with the input.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    it = iter(items)
    while True:
        chunk = list(islice(it, size))
        if not chunk:
            return
        yield chunk


def ordered(
    work: Callable[[list[T]], list[R]],
    items: Iterable[T],
    *,
    jobs: int,
    initializer: Callable[..., Any],
    initargs: tuple[Any, ...] = (),
    chunk: int = 64,
    window: int | None = None,
) -> Iterator[list[R]]:
    """`work(chunk)` for consecutive chunks of `items`, results in input order.

    With `jobs` ≤ 1 everything runs here (after `initializer(*initargs)`); else in `jobs`
    spawned processes, at most `window` chunks (default 2 × jobs) queued at once.
    """
    if jobs <= 1:
        initializer(*initargs)
        for c in chunks(items, chunk):
            yield work(c)
        return
    limit = window or 2 * jobs
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        pending: deque[Future[list[R]]] = deque()
        try:
            for c in chunks(items, chunk):
                pending.append(pool.submit(work, c))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
