"""The decision log: every answered decision, durably stored before it is answered.

SQLite (WAL, ``synchronous=FULL``) by default, PostgreSQL (psycopg 3) for a shared
database (`backends.py`); the schema is versioned (`schema.py`); each decision is kept
compactly, its facts and the digest of the ruleset that decided it (`records.py`). All
database work runs on one dedicated thread per log, so the event loop never waits on an
fsync.

Writes are group-committed. While one transaction commits (the fsync is most of its
cost), the writes that arrive meanwhile queue up; the writer thread then takes all of them,
inserts their rows in one transaction and commits once, and only then acknowledges each
waiting request. A decision is therefore never answered before its row is durable, yet
many concurrent decisions share one fsync. If a group's transaction fails, each of its
writes is retried alone, so one bad write fails only its own request.

Readiness (`check_writable`) commits a real write, the `heartbeat` row: taking a lock
proves nothing (SQLite grants it on immutable files). A missing table is re-created by
running the migrations again, and a SQLite file deleted or replaced under the server is
opened anew, so the log heals instead of failing every write until a restart.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from ..errors import ServiceUnavailable
from ..redact import redact_url, scrub
from .backends import Backend, Postgres, backend_for, check_opens
from .records import Entry, RulesetSource, facts_json, pack, unpack
from .schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew

log = logging.getLogger("kaq.decision_log")
T = TypeVar("T")

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Backend",
    "DecisionLog",
    "DecisionLogError",
    "Entry",
    "RulesetSource",
    "SchemaTooNew",
    "backend_for",
    "facts_json",
    "check_opens",
    "pack",
    "unpack",
]


class DecisionLogError(ServiceUnavailable):
    """The decision log cannot be written or read; nothing is answered without it."""

    slug = "decision-log-unavailable"
    title = "Decision log unavailable"


Rows = list[Entry]
CommitHook = Callable[[int, float], None]
"""Called on the writer thread after each commit with (decisions, seconds)."""


@dataclass(eq=False)
class _Job:
    """A unit of work for the writer thread: rows to insert, or a call to make."""

    future: Future[Any]
    rows: Rows | None = None
    call: Callable[[], Any] | None = None


_STOP = object()


class DecisionLog:
    """Asynchronous face of the log; every call runs on the log's own writer thread.

    `commits` counts the write transactions committed and `committed` the
    decisions they held; with many concurrent writers `commits` grows slower
    than the number of `write()` calls (group commit).
    """

    #: A group stops taking more writes once it holds this many rows, bounding
    #: the size (and the lock time) of one transaction. A single larger write
    #: (a 10,000-account portfolio) is still one transaction of its own.
    max_group_rows = 4096

    def __init__(self, url: str, *, on_commit: CommitHook | None = None):
        self.url = url
        self._backend: Backend = backend_for(url)
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self.commits = 0
        self.committed = 0
        self._probe: asyncio.Future[None] | None = None
        self._stored: set[str] = set()  # ruleset digests whose source is stored
        self._stored_at = -1  # the backend's migrations when `_stored` was last true

    @property
    def kind(self) -> str:
        return "postgresql" if isinstance(self._backend, Postgres) else "sqlite"

    # -- the writer thread -------------------------------------------------

    def _submit(self, job: _Job) -> Future[Any]:
        with self._thread_lock:
            if self._thread is None:
                self._start()
            self._queue.put(job)
        return job.future

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="kaq-db", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        held: _Job | object | None = None
        while True:
            job = held if held is not None else self._queue.get()
            held = None
            if job is _STOP:
                try:
                    self._backend.close()
                except Exception:
                    log.exception("closing the decision log failed")
                return
            assert isinstance(job, _Job)
            if job.rows is None:
                if job.future.set_running_or_notify_cancel():
                    _settle(job.future, job.call)
                continue
            # Everything that queued up while the previous commit ran joins this group.
            group, rows = [job], len(job.rows)
            while rows < self.max_group_rows:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Job) or more.rows is None:
                    held = more  # a read or the stop runs after this group, in order
                    break
                group.append(more)
                rows += len(more.rows)
            self._commit_group(group)

    def _commit_group(self, group: list[_Job]) -> None:
        live = [j for j in group if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            self._insert([row for j in live for row in j.rows or ()])
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            log.warning(
                "group commit of %d writes failed (%s); retrying each alone",
                len(live),
                type(exc).__name__,
            )
            for j in live:
                try:
                    self._insert(j.rows or [])
                except Exception as one:
                    j.future.set_exception(one)
                else:
                    j.future.set_result(None)
            return
        for j in live:  # acknowledged only now: every row of the group is committed
            j.future.set_result(None)

    def _insert(self, rows: Rows) -> None:
        started = time.perf_counter()
        self._backend.insert(rows)
        seconds = time.perf_counter() - started
        self.commits += 1
        self.committed += len(rows)
        if self._on_commit is not None:
            try:
                self._on_commit(len(rows), seconds)
            except Exception:  # a metrics hook must never fail a durable write
                log.exception("decision log commit hook failed")
        log.debug("committed %d decisions in %.1f ms", len(rows), seconds * 1e3)

    # -- the asynchronous face ---------------------------------------------

    async def _await(self, job: _Job) -> Any:
        try:
            return await asyncio.wrap_future(self._submit(job))
        except SchemaTooNew:
            raise
        except Exception as exc:
            log.error("decision log error: %s", scrub(str(exc), self.url))
            raise DecisionLogError(f"The decision log failed: {type(exc).__name__}.") from exc

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._await(_Job(Future(), call=partial(fn, *args)))
        return result

    async def open(self) -> int:
        """Connect and bring the schema to `SCHEMA_VERSION`; returns the version."""
        version = await self._call(self._backend.migrate)
        log.info(
            "decision log ready: %s %s, schema version %d, group commit",
            self.kind,
            redact_url(self.url),
            version,
        )
        return version

    async def write(self, entries: Sequence[Entry]) -> None:
        """Store decisions; returns once they are durably committed (maybe with others')."""
        if entries:
            await self._await(_Job(Future(), rows=list(entries)))

    async def store_rulesets(self, sources: Sequence[RulesetSource]) -> None:
        """Keep these rulesets' sources (once per digest), committed before it returns."""
        if self._backend.migrations != self._stored_at:
            # the schema was re-created since (a healed log): what was stored is gone
            self._stored.clear()
            self._stored_at = self._backend.migrations
        fresh = [s for s in sources if s.digest not in self._stored]
        if fresh:
            await self._call(self._backend.store_rulesets, fresh)
            self._stored.update(s.digest for s in fresh)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision (compact entry or old row), or None."""
        return await self._call(self._backend.fetch, decision_id)

    async def ruleset(self, digest: str) -> RulesetSource | None:
        """The source of a ruleset that decided something logged, or None."""
        return await self._call(self._backend.ruleset, digest)

    async def prune(self, before: datetime) -> int:
        """Delete what was logged before `before`; how many decisions went."""
        return await self._call(self._backend.prune, before)

    async def check_writable(self) -> None:
        """Raise DecisionLogError unless a write can be committed now (it commits one).

        Concurrent callers share one probe, so a burst of readiness checks costs one
        commit, not one each.
        """
        if self._probe is None:
            probe = asyncio.ensure_future(self._call(self._backend.probe))
            self._probe = probe

            def done(_: asyncio.Future[None]) -> None:
                self._probe = None
                if not probe.cancelled():
                    probe.exception()  # retrieved here even if every caller went away

            probe.add_done_callback(done)
        await asyncio.shield(self._probe)

    async def schema_version(self) -> int:
        return await self._call(self._backend.schema_version)

    async def close(self) -> None:
        """Commit what is queued, close the connection and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        # The thread commits what is queued before the stop, closes the connection and
        # ends. It stays registered until then, so a late write can never start a
        # second thread on the same connection meanwhile.
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        with self._thread_lock:
            self._thread = None
            if not self._queue.empty():  # written after the stop: serve it (reconnects)
                self._start()


def _settle(future: Future[Any], call: Callable[[], Any] | None) -> None:
    assert call is not None
    try:
        result = call()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)
