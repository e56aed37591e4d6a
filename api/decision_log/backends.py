"""The blocking side of the decision log: SQLite and PostgreSQL, behind one interface.

Only ever called from one thread at a time (the log's writer thread, or a CLI command).
Both heal: a missing table is re-created by running the migrations again, a SQLite file
deleted or replaced under the server is opened anew, a lost PostgreSQL connection is
opened again once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..redact import redact_url, scrub
from .records import COLUMNS, Entry, RulesetSource, entry_record, stamp
from .schema import MIGRATIONS, refuse_newer

log = logging.getLogger("kaq.decision_log")
T = TypeVar("T")

# the old table: a whole verdict per row (schema versions 1 to 3); still read, never written
_OLD_COLUMNS = (
    "decision_id, created_at, ruleset_name, ruleset_version, ruleset_digest, "
    "account_id, qualification, duration_ms, facts, verdict"
)


def _old_record(row: Sequence[Any]) -> dict[str, Any]:
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
        "view": "full",
        "kaq_version": None,
    }


_COLUMNS = (
    "decision_id, created_at, ruleset_name, ruleset_version, ruleset_digest, "
    "account_id, qualification, duration_ms, facts, verdict"
)


class Backend(ABC):
    """The blocking side of the log; only ever called from one thread at a time."""

    text_time = True  # SQLite stores times as sortable text
    migrations = 0  # times the schema was (re-)created or checked: a healed log is empty

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def migrate(self) -> int: ...

    @abstractmethod
    def insert(self, entries: Sequence[Entry]) -> None:
        """Store decisions in one transaction."""

    @abstractmethod
    def store_rulesets(self, sources: Sequence[RulesetSource]) -> None:
        """Keep each ruleset's source once per digest (an existing digest is left as is)."""

    @abstractmethod
    def fetch(self, decision_id: str) -> dict[str, Any] | None:
        """A logged decision: the compact entry (`facts`, `ruleset` with its source) or an
        old row (`verdict`), or None."""

    @abstractmethod
    def ruleset(self, digest: str) -> RulesetSource | None: ...

    @abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete the decisions logged before `before`; how many went."""

    @abstractmethod
    def export(self, since: datetime | None, until: datetime | None) -> Iterator[dict[str, Any]]:
        """(created_at, decision_id, facts) of every decision in the period, oldest first."""

    @abstractmethod
    def probe(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def schema_version(self) -> int: ...

    def count(self) -> int:
        """Decisions logged, in both tables."""
        raise NotImplementedError


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


class SQLite(Backend):
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
            refuse_newer(version)
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

        self.migrations += 1
        return self._tx(work, heal=False)

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row.fetchone()[0])

    def insert(self, entries: Sequence[Entry]) -> None:
        sql = f"INSERT INTO log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        rows = [e.row(True) for e in entries]
        self._tx(lambda conn: conn.executemany(sql, rows))

    def store_rulesets(self, sources: Sequence[RulesetSource]) -> None:
        sql = "INSERT OR IGNORE INTO rulesets VALUES (?, ?, ?, ?, ?)"
        at = stamp(datetime.now(UTC))
        rows = [(r.digest, r.name, r.version, r.source, at) for r in sources]
        self._tx(lambda conn: conn.executemany(sql, rows))

    def fetch(self, decision_id: str) -> dict[str, Any] | None:
        conn = self._conn
        row = conn.execute(
            f"SELECT {COLUMNS} FROM log WHERE decision_id = ?", (decision_id,)
        ).fetchone()
        if row is not None:
            rs = self.ruleset(row[2])
            meta = {"name": rs.name, "version": rs.version} if rs else None
            return entry_record(tuple(row), meta)
        old = conn.execute(
            f"SELECT {_OLD_COLUMNS} FROM decisions WHERE decision_id = ?", (decision_id,)
        ).fetchone()
        return _old_record(old) if old else None

    def ruleset(self, digest: str) -> RulesetSource | None:
        row = self._conn.execute(
            "SELECT digest, name, version, source FROM rulesets WHERE digest = ?", (digest,)
        ).fetchone()
        return RulesetSource(*row) if row else None

    def prune(self, before: datetime) -> int:
        cutoff = stamp(before)

        def work(conn: sqlite3.Connection) -> int:
            n = conn.execute("DELETE FROM log WHERE created_at < ?", (cutoff,)).rowcount
            n += conn.execute("DELETE FROM decisions WHERE created_at < ?", (cutoff,)).rowcount
            return n

        return self._tx(work)

    def export(self, since: datetime | None, until: datetime | None) -> Iterator[dict[str, Any]]:
        lo = stamp(since) if since else ""
        hi = stamp(until) if until else "~"
        conn = self._conn
        for table in ("decisions", "log"):
            cur = conn.execute(
                f"SELECT created_at, decision_id, facts FROM {table} "
                "WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
                (lo, hi),
            )
            for created, did, facts in cur:
                yield {"created_at": str(created), "decision_id": did, "facts": _facts(facts)}

    def count(self) -> int:
        conn = self._conn
        return sum(
            int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            for t in ("log", "decisions")
        )

    def probe(self) -> None:
        # A committed write, as a verdict's would be: a lock alone (BEGIN IMMEDIATE) is
        # granted even when the files cannot be written.
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM log LIMIT 0")
            conn.execute(_HEARTBEAT_SQLITE, (datetime.now(UTC).isoformat(), _who()))

        self._tx(work)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Postgres(Backend):
    text_time = False

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
            refuse_newer(version)
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

        self.migrations += 1
        return self._run(work, heal=False)

    def schema_version(self) -> int:
        return self._run(
            lambda conn: int(
                conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            )
        )

    def insert(self, entries: Sequence[Entry]) -> None:
        # ON CONFLICT: a retry after a lost acknowledgement must not fail on its own first write.
        sql = (
            f"INSERT INTO log ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (decision_id) DO NOTHING"
        )
        rows = [e.row(False) for e in entries]
        self._run(lambda conn: conn.cursor().executemany(sql, rows))

    def store_rulesets(self, sources: Sequence[RulesetSource]) -> None:
        sql = "INSERT INTO rulesets VALUES (%s, %s, %s, %s, now()) ON CONFLICT (digest) DO NOTHING"
        rows = [(r.digest, r.name, r.version, r.source) for r in sources]
        self._run(lambda conn: conn.cursor().executemany(sql, rows))

    def fetch(self, decision_id: str) -> dict[str, Any] | None:
        def work(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM log WHERE decision_id = %s", (decision_id,)
            ).fetchone()
            if row is not None:
                meta = conn.execute(
                    "SELECT name, version FROM rulesets WHERE digest = %s", (row[2],)
                ).fetchone()
                return entry_record(
                    tuple(row), {"name": meta[0], "version": meta[1]} if meta else None
                )
            old = conn.execute(
                f"SELECT {_OLD_COLUMNS} FROM decisions WHERE decision_id = %s", (decision_id,)
            ).fetchone()
            return _old_record(old) if old else None

        return self._run(work)

    def ruleset(self, digest: str) -> RulesetSource | None:
        def work(conn: Any) -> RulesetSource | None:
            row = conn.execute(
                "SELECT digest, name, version, source FROM rulesets WHERE digest = %s", (digest,)
            ).fetchone()
            return RulesetSource(*row) if row else None

        return self._run(work)

    def prune(self, before: datetime) -> int:
        def work(conn: Any) -> int:
            n = conn.execute("DELETE FROM log WHERE created_at < %s", (before,)).rowcount
            n += conn.execute("DELETE FROM decisions WHERE created_at < %s", (before,)).rowcount
            return int(n)

        return self._run(work)

    def export(self, since: datetime | None, until: datetime | None) -> Iterator[dict[str, Any]]:
        lo = since or datetime(1970, 1, 1, tzinfo=UTC)
        hi = until or datetime(9999, 1, 1, tzinfo=UTC)
        if self.conn is None or self.conn.closed:
            self.connect()
        for table in ("decisions", "log"):
            with self.conn.transaction(), self.conn.cursor(name=f"kaq_export_{table}") as cur:
                cur.itersize = 2000  # a server-side cursor: never the whole table in memory
                cur.execute(
                    f"SELECT created_at, decision_id, facts FROM {table} "
                    "WHERE created_at >= %s AND created_at < %s ORDER BY created_at",
                    (lo, hi),
                )
                for created, did, facts in cur:
                    yield {"created_at": stamp(created), "decision_id": did, "facts": _facts(facts)}

    def count(self) -> int:
        return self._run(
            lambda conn: sum(
                int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("log", "decisions")
            )
        )

    def probe(self) -> None:
        # A committed write, as a verdict's would be: it fails on a read-only server, a
        # missing table (re-created by _run) or a full disk, where a SELECT would not.
        def work(conn: Any) -> None:
            conn.execute("SELECT 1 FROM log LIMIT 0")
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


def backend_for(url: str) -> Backend:
    """The backend a `KAQ_DB_URL` names."""
    if url.startswith(("postgresql://", "postgres://")):
        return Postgres(url)
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if path in ("", "/", "/:memory:"):
            return SQLite(":memory:")
        # sqlite:///kaq.db is relative, sqlite:////var/kaq.db absolute (as in SQLAlchemy).
        return SQLite(path[1:] if path.startswith("/") else path)
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


def _facts(value: Any) -> Any:
    """Facts as stored: compressed JSON (the log), or JSON text (the old table)."""
    from .records import unpack

    if isinstance(value, bytes | memoryview):
        return unpack(value)
    return json.loads(value)
