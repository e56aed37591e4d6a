"""The one thread per process that touches the rules engine.

durable_rules is a C engine with module-global state that never releases the
GIL and crashes when threads share it carelessly. Every call into `engine/`
(loading, evaluating, closing) goes through this single thread, so at most one
thread of the process is ever inside it, the event loop stays free to accept
requests, answer health checks and write the decision log meanwhile, and work
is done in submission order (a ruleset is closed only after every evaluation
submitted before its close). Throughput comes from more processes, not threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _get() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="kaq-engine")
        return _executor


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the engine thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(_get(), partial(fn, *args))


def submit(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Queue `fn(*args)` on the engine thread without waiting for it."""
    return _get().submit(fn, *args)


def on_engine_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` made to run on the engine thread when called from any other (it blocks the caller).

    For work called from a worker thread that must touch the engine (a publish gate binds
    rulesets); never call the result on the engine thread itself, which would wait for
    itself.
    """

    def call(*args: Any) -> T:
        return submit(fn, *args).result()

    return call
