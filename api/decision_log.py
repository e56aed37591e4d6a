"""The decision log: every verdict, durably stored before it is answered.

SQLite (WAL, ``synchronous=FULL``) by default, PostgreSQL (psycopg 3) for a
shared database. The schema is versioned: `schema_version` holds the applied
migrations and `MIGRATIONS` lists them in order, so a later kaq adds entries
and older databases are brought forward on start. All database work runs on
one dedicated thread per log, so the event loop never waits on an fsync.

Writes are group-committed. While one transaction commits (the fsync is most
of its cost), the writes that arrive meanwhile queue up; the writer thread then
takes all of them, inserts their rows in one transaction and commits once, and
only then acknowledges each waiting request. A verdict is therefore never
answered before its row is durable, yet many concurrent verdicts share one
fsync. If a group's transaction fails, each of its writes is retried alone, so
one bad write fails only its own request.

Readiness (`check_writable`) commits a real write, the `heartbeat` row: taking
a lock proves nothing (SQLite grants it on immutable files). A missing table is
re-created by running the migrations again, and a SQLite file deleted or
replaced under the server is opened anew, so the log heals instead of failing
every write until a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .errors import ServiceUnavailable
from .redact import redact_url, scrub

log = logging.getLogger("kaq.decision_log")
T = TypeVar("T")


class DecisionLogError(ServiceUnavailable):
    """The decision log cannot be written or read; nothing is answered without it."""

    slug = "decision-log-unavailable"
    title = "Decision log unavailable"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer kaq than this one."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema step, written for each backend."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "decisions table",
        sqlite=(
            """CREATE TABLE decisions (
                decision_id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                ruleset_name TEXT NOT NULL,
                ruleset_version TEXT NOT NULL,
                ruleset_digest TEXT NOT NULL,
                account_id TEXT,
                qualification TEXT,
                duration_ms REAL NOT NULL,
                facts TEXT NOT NULL,
                verdict TEXT NOT NULL
            )""",
        ),
        postgres=(
            """CREATE TABLE decisions (
                decision_id TEXT PRIMARY KEY,
                created_at TIMESTAMPTZ NOT NULL,
                ruleset_name TEXT NOT NULL,
                ruleset_version TEXT NOT NULL,
                ruleset_digest TEXT NOT NULL,
                account_id TEXT,
                qualification TEXT,
                duration_ms DOUBLE PRECISION NOT NULL,
                facts TEXT NOT NULL,
                verdict TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "index decisions by account and time",
        sqlite=("CREATE INDEX decisions_account ON decisions (account_id, created_at)",),
        postgres=("CREATE INDEX decisions_account ON decisions (account_id, created_at)",),
    ),
    Migration(
        3,
        "heartbeat: the row readiness probes write",
        sqlite=(
            "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "at TEXT NOT NULL, by TEXT NOT NULL)",
        ),
        postgres=(
            "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "at TIMESTAMPTZ NOT NULL, by TEXT NOT NULL)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


@dataclass(frozen=True)
class Decision:
    """One logged verdict."""

    decision_id: str
    ruleset_name: str
    ruleset_version: str
    ruleset_digest: str
    account_id: str | None
    qualification: str | None
    duration_ms: float
    facts: Mapping[str, Any]
    verdict: Mapping[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> tuple[Any, ...]:
        return (
            self.decision_id,
            self.created_at.isoformat(timespec="microseconds"),
            self.ruleset_name,
            self.ruleset_version,
            self.ruleset_digest,
            self.account_id,
            self.qualification,
            self.duration_ms,
            _json(self.facts),
            _json(self.verdict),
        )


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _record(row: Sequence[Any]) -> dict[str, Any]:
    created = row[1]
    if isinstance(created, datetime):
        created = created.astimezone(UTC).isoformat(timespec="microseconds")
    return {
        "decision_id": row[0],
        "created_at": created,
        "ruleset": {"name": row[2], "version": row[3], "digest": row[4]},
        "account_id": row[5],
        "qualification": row[6],
        "duration_ms": row[7],
        "facts": json.loads(row[8]),
        "verdict": json.loads(row[9]),
    }


_COLUMNS = (
    "decision_id, created_at, ruleset_name, ruleset_version, ruleset_digest, "
    "account_id, qualification, duration_ms, facts, verdict"
)


class _Backend(ABC):
    """The blocking side of the log; only ever called from the log's own thread."""

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def migrate(self) -> int: ...

    @abstractmethod
    def insert(self, rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def fetch(self, decision_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def probe(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def schema_version(self) -> int: ...


def _switch_to_wal(conn: sqlite3.Connection, deadline_s: float = 30.0) -> None:
    """PRAGMA journal_mode=WAL, retried: when several workers open a new database at once,
    SQLite answers "database is locked" at once instead of waiting on its busy timeout."""
    end = time.monotonic() + deadline_s
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > end:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class _SQLite(_Backend):
    def __init__(self, path: str):
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file open

    def connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        _switch_to_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        self.conn = conn
        self._file = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_dev, st.st_ino)

    def _refuse_unwritable(self, suffixes: tuple[str, ...]) -> None:
        """Fail, before SQLite touches them, if these files exist and cannot be written.

        SQLite writes the -shm index through a shared memory mapping; when that file is
        made immutable, the write is answered with SIGBUS and the process dies. Asking
        first turns it into an error (503, not ready) like any other unwritable file.
        """
        if self.path == ":memory:":
            return
        for suffix in suffixes:
            name = self.path + suffix
            # exists, then asked again: another connection may be creating it just now
            if not os.access(name, os.W_OK) and os.path.exists(name):
                if not os.access(name, os.W_OK):
                    raise sqlite3.OperationalError(f"{name} cannot be written")

    @property
    def _conn(self) -> sqlite3.Connection:
        self._refuse_unwritable(("-shm",))  # readers write their marks into it too
        if self.conn is not None and self._identity() != self._file:
            # The file was deleted or replaced under us: writing on would "commit" into a
            # file nobody will ever read. Open the one at the path (migrated anew).
            log.warning("decision log file %s was replaced or deleted; reopening it", self.path)
            self.close()
            self.connect()
            self.migrate()
        if self.conn is None:
            self.connect()
        assert self.conn is not None
        return self.conn

    def _tx(self, work: Callable[[sqlite3.Connection], T], *, heal: bool = True) -> T:
        """Run `work(conn)` in a write transaction; missing tables are re-created once."""
        try:
            return self._tx_once(work)
        except sqlite3.OperationalError as exc:
            if not heal or not str(exc).startswith("no such table"):
                raise
            log.warning("decision log schema missing (%s); re-creating it", exc)
            self.migrate()
            return self._tx_once(work)

    def _tx_once(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        self._refuse_unwritable(("", "-wal"))
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def migrate(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version = int(current.fetchone()[0])
            _refuse_newer(version)
            for m in MIGRATIONS:
                if m.version > version:
                    for statement in m.sqlite:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        (m.version, m.description, datetime.now(UTC).isoformat()),
                    )
                    version = m.version
            return version

        return self._tx(work, heal=False)

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row.fetchone()[0])

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        sql = f"INSERT INTO decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self._tx(lambda conn: conn.executemany(sql, rows))

    def fetch(self, decision_id: str) -> dict[str, Any] | None:
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE decision_id = ?", (decision_id,)
        )
        row = cur.fetchone()
        return _record(row) if row else None

    def probe(self) -> None:
        # A committed write, as a verdict's would be: a lock alone (BEGIN IMMEDIATE) is
        # granted even when the files cannot be written.
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM decisions LIMIT 0")
            conn.execute(_HEARTBEAT_SQLITE, (datetime.now(UTC).isoformat(), _who()))

        self._tx(work)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _Postgres(_Backend):
    LOCK_KEY = 0x6B6171  # "kaq": serialises concurrent migrations of several workers

    def __init__(self, url: str):
        self.url = url
        self.conn: Any = None

    def connect(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def _run(self, work: Callable[[Any], T], *, heal: bool = True) -> T:
        """Run `work(conn)` in a transaction, reconnecting once if the connection was lost
        and re-creating the schema once if a table is missing (the database or schema was
        dropped and created again empty: the service heals instead of answering 503)."""
        import psycopg
        from psycopg import errors

        reconnected = healed = False
        while True:
            if self.conn is None or self.conn.closed:
                self.connect()
            try:
                with self.conn.transaction():
                    return work(self.conn)
            except psycopg.OperationalError:
                self.close()
                if reconnected:
                    raise
                reconnected = True
            except errors.UndefinedTable as exc:
                if not heal or healed:
                    raise
                healed = True
                log.warning(
                    "decision log schema missing (%s); re-creating it",
                    str(exc).strip().splitlines()[0],
                )
                self.migrate()

    def migrate(self) -> int:
        def work(conn: Any) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL)"
            )
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            version = int(row[0])
            _refuse_newer(version)
            for m in MIGRATIONS:
                if m.version > version:
                    for statement in m.postgres:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version VALUES (%s, %s, now())",
                        (m.version, m.description),
                    )
                    version = m.version
            return version

        return self._run(work, heal=False)

    def schema_version(self) -> int:
        return self._run(
            lambda conn: int(
                conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            )
        )

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        # ON CONFLICT: a retry after a lost acknowledgement must not fail on its own first write.
        sql = (
            f"INSERT INTO decisions ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (decision_id) DO NOTHING"
        )
        self._run(lambda conn: conn.cursor().executemany(sql, rows))

    def fetch(self, decision_id: str) -> dict[str, Any] | None:
        def work(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE decision_id = %s", (decision_id,)
            ).fetchone()
            return _record(row) if row else None

        return self._run(work)

    def probe(self) -> None:
        # A committed write, as a verdict's would be: it fails on a read-only server, a
        # missing table (re-created by _run) or a full disk, where a SELECT would not.
        def work(conn: Any) -> None:
            conn.execute("SELECT 1 FROM decisions LIMIT 0")
            conn.execute(_HEARTBEAT_POSTGRES, (_who(),))

        self._run(work)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


def _who() -> str:
    """Which process wrote the heartbeat: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


_HEARTBEAT_SQLITE = (
    "INSERT INTO heartbeat (id, at, by) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET at = excluded.at, by = excluded.by"
)
_HEARTBEAT_POSTGRES = (
    "INSERT INTO heartbeat (id, at, by) VALUES (1, now(), %s) "
    "ON CONFLICT (id) DO UPDATE SET at = excluded.at, by = excluded.by"
)


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"decision log schema is at version {version}; this kaq knows up to {SCHEMA_VERSION}"
        )


def backend_for(url: str) -> _Backend:
    """The backend a `KAQ_DB_URL` names."""
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if path in ("", "/", "/:memory:"):
            return _SQLite(":memory:")
        # sqlite:///kaq.db is relative, sqlite:////var/kaq.db absolute (as in SQLAlchemy).
        return _SQLite(path[1:] if path.startswith("/") else path)
    raise ValueError(f"unsupported decision log URL: {redact_url(url)!r}")


def check_opens(url: str) -> str | None:
    """None if the log at `url` opens (connect, migrate, close), else one line saying why.

    For start-up, before any worker runs: an unreachable database is one clear line
    for the operator (credentials masked), not a traceback per worker.
    """
    try:
        backend = backend_for(url)
    except ValueError as exc:
        return str(exc)
    try:
        backend.migrate()
    except Exception as exc:
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()] or [type(exc).__name__]
        reason = lines[0] + (f" ({' '.join(lines[1:])})" if len(lines) > 1 else "")
        return f"the decision log {redact_url(url)} cannot be opened: {scrub(reason, url)}"
    finally:
        try:
            backend.close()
        except Exception:  # closing what never opened: nothing to report
            pass
    return None


Rows = list[tuple[Any, ...]]
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
        self._backend = backend_for(url)
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self.commits = 0
        self.committed = 0
        self._probe: asyncio.Future[None] | None = None

    @property
    def kind(self) -> str:
        return "postgresql" if isinstance(self._backend, _Postgres) else "sqlite"

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

    async def write(self, decisions: Sequence[Decision]) -> None:
        """Store decisions; returns once they are durably committed (maybe with others')."""
        if decisions:
            await self._await(_Job(Future(), rows=[d.row() for d in decisions]))

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision, or None."""
        return await self._call(self._backend.fetch, decision_id)

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
