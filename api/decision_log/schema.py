"""The decision log's schema: numbered migrations, each written for SQLite and PostgreSQL.

`schema_version` holds the applied migrations; a newer kaq adds entries and brings older
databases forward on start (several workers at once are serialised: an advisory lock on
PostgreSQL, SQLite's write lock). Version 4 is the compact log: the facts of each decision
(compressed) and the ruleset that decided it, its source stored once per digest; the
rows of the old `decisions` table (a whole verdict each) stay readable where they are.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    Migration(
        4,
        "compact log: facts and ruleset digest per decision, ruleset sources once",
        sqlite=(
            """CREATE TABLE rulesets (
                digest TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                source TEXT NOT NULL,
                stored_at TEXT NOT NULL
            )""",
            # WITHOUT ROWID: the row is stored once, in the key's tree
            """CREATE TABLE log (
                decision_id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                ruleset_digest TEXT NOT NULL,
                account_id TEXT,
                qualification TEXT,
                score REAL,
                view TEXT NOT NULL,
                duration_ms REAL NOT NULL,
                kaq_version TEXT NOT NULL,
                facts BLOB NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX log_created ON log (created_at)",
            "CREATE INDEX log_account ON log (account_id, created_at)",
            "CREATE INDEX decisions_created ON decisions (created_at)",
        ),
        postgres=(
            """CREATE TABLE rulesets (
                digest TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                source TEXT NOT NULL,
                stored_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE log (
                decision_id TEXT PRIMARY KEY,
                created_at TIMESTAMPTZ NOT NULL,
                ruleset_digest TEXT NOT NULL,
                account_id TEXT,
                qualification TEXT,
                score DOUBLE PRECISION,
                view TEXT NOT NULL,
                duration_ms DOUBLE PRECISION NOT NULL,
                kaq_version TEXT NOT NULL,
                facts BYTEA NOT NULL
            )""",
            "CREATE INDEX log_created ON log (created_at)",
            "CREATE INDEX log_account ON log (account_id, created_at)",
            "CREATE INDEX decisions_created ON decisions (created_at)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer kaq than this one."""


def refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"decision log schema is at version {version}; this kaq knows up to {SCHEMA_VERSION}"
        )
