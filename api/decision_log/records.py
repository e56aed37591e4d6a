"""What one decision leaves in the log, and how it is packed.

A decision is stored compactly: the facts as the caller sent them (JSON, compressed), the
digest of the ruleset that decided (its source is stored once per digest), and the
decision's headline (qualification, score) for queries and for checking a recomputation.
The full verdict is not stored: it is a pure function of the facts and the ruleset, and
`GET /v1/decisions/{id}` makes it again, equal to the answer given then (the kaq version
that logged it is kept beside it, since another version may word its texts otherwise).

The facts are compressed with Zstandard (a frame starts with its magic number); rows
written before it hold zlib streams, and both read back (`unpack`).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import zstandard

LEVEL = 3  # zstd: an account's facts are about 1 KB of JSON; level 3 gives ~0.6 KB in ~9 µs
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # the first bytes of every Zstandard frame
_local = threading.local()  # a (de)compression context per thread: they are not shared


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def compress(data: bytes) -> bytes:
    """The facts' JSON as a row stores it."""
    return _compressor().compress(data)


def pack(facts: Any) -> bytes:
    """The facts as compressed JSON (what a row stores)."""
    return compress(orjson.dumps(facts))


def facts_json(facts: Any) -> bytes:
    """The facts as an `Entry` carries them: JSON, compressed later by the writer thread."""
    return orjson.dumps(facts)


def unpack(blob: bytes | memoryview) -> Any:
    """Stored facts: a Zstandard frame, or the zlib stream of a row written before it."""
    data = bytes(blob)
    if data[:4] == ZSTD_MAGIC:
        return orjson.loads(_decompressor().decompress(data))
    return orjson.loads(zlib.decompress(data))


def now() -> datetime:
    return datetime.now(UTC)


def stamp(when: datetime) -> str:
    """The one text form of a time in SQLite: UTC, microseconds, sortable as text."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Entry:
    """One logged decision."""

    decision_id: str
    ruleset_digest: str
    account_id: str | None
    qualification: str | None
    score: float | None
    view: str
    duration_ms: float
    kaq_version: str
    facts: bytes  # as JSON (orjson); compressed on the log's own thread, when written
    created_at: datetime = field(default_factory=now)

    def row(self, text_time: bool) -> tuple[Any, ...]:
        return (
            self.decision_id,
            stamp(self.created_at) if text_time else self.created_at,
            self.ruleset_digest,
            self.account_id,
            self.qualification,
            self.score,
            self.view,
            self.duration_ms,
            self.kaq_version,
            compress(self.facts),
        )


COLUMNS = (
    "decision_id, created_at, ruleset_digest, account_id, qualification, score, view, "
    "duration_ms, kaq_version, facts"
)


@dataclass(frozen=True)
class RulesetSource:
    """A ruleset as the log keeps it: once per digest."""

    digest: str
    name: str
    version: str
    source: str


def created_text(value: Any) -> str:
    """A stored time as text (PostgreSQL gives datetimes, SQLite the stored text)."""
    if isinstance(value, datetime):
        return stamp(value)
    return str(value)


def entry_record(row: tuple[Any, ...], ruleset: Mapping[str, Any] | None) -> dict[str, Any]:
    """A `log` row as plain data (facts unpacked)."""
    return {
        "decision_id": row[0],
        "created_at": created_text(row[1]),
        "ruleset_digest": row[2],
        "account_id": row[3],
        "qualification": row[4],
        "score": row[5],
        "view": row[6],
        "duration_ms": row[7],
        "kaq_version": row[8],
        "facts": unpack(row[9]),
        "ruleset": dict(ruleset) if ruleset else None,
    }
