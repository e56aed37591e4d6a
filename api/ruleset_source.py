"""Where a server's rulesets come from, and how every worker and every replica learns of a
new version of them.

A *version* is a whole set of ruleset files (the rulesets and their test cases, by file
name; `engine.tools.gate`), with a number, a digest of the set, who made it, when and why.
Two sources keep versions behind one interface, :class:`RulesetSource`:

- :class:`FolderSource` (``KAQ_RULESET_SOURCE=dir``, the default): the rulesets folder.
  Under ``kaq serve``, the run directory that the workers share (``KAQ_RUN_DIR``) holds the
  run's current *generation*: the set of files one worker validated, written whole. Every
  worker watches it and loads exactly those files, so files changed on disk after the
  validation never reach a worker unvalidated, and no worker stays behind. A generation
  is made by a worker that starts, by ``POST /v1/admin/reload`` and by SIGHUP, each after
  compiling and binding the folder itself.
- :class:`DbSource` (``KAQ_RULESET_SOURCE=db``): the versions in PostgreSQL, table
  ``kaq_ruleset_versions`` of the decision log's database (``KAQ_DB_URL``). `kaq publish`
  adds one after the gate (compile, bind, every test case); each worker of each replica
  LISTENs on channel ``kaq_rulesets`` and also polls the newest version every
  ``KAQ_RULESET_POLL_SECONDS``, so a missed notification or a dropped connection delays a
  switch by one poll at most.

For the studio (one ruleset edited in the browser), the same source is the versions store:

- ``publish_ruleset(name, source, who=..., note=..., base_digest=...)``: the current set with
  that one ruleset replaced, through the same gate; :class:`StaleBase` (HTTP 409) when
  `base_digest` is no longer the digest of that ruleset in the newest version;
  :class:`PublishRejected` (with the gate's diagnostics and failed cases) when it does not
  validate or a case fails; the new :class:`VersionInfo` otherwise.
- ``versions(name)``: that ruleset's versions, newest first (digest, when, who, note).
- ``ruleset_text(name, digest)``: the text of one of them, for a revert (which is a
  ``publish_ruleset`` of that text, through the same checks).

Every call here blocks (files, a database): call it from a thread, never the engine
thread, since the gate binds rulesets on the engine thread given as `gate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.lang.source import source_digest
from engine.tools.gate import GateResult, check_set, read_set, set_digest, set_meta

log = logging.getLogger("kaq.rulesets")

Gate = Callable[[Mapping[str, str]], GateResult]
CHANNEL = "kaq_rulesets"
LISTENER_NAME = "kaq-ruleset-listener"  # application_name of every worker's LISTEN connection


@dataclass(frozen=True)
class VersionInfo:
    """One version of the set of rulesets: which, by whom, when, why (no file texts)."""

    source: str  # "dir" or "db"
    version: int  # 1, 2, ... (a FolderSource's generation; 0: the folder, read directly)
    digest: str  # engine.tools.gate.set_digest of the files
    rulesets: Mapping[str, Mapping[str, str]]  # ruleset name -> {"file", "digest"}
    who: str = ""
    note: str = ""
    published_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for listings."""
        return {
            "source": self.source,
            "version": self.version,
            "digest": self.digest,
            "who": self.who,
            "note": self.note,
            "published_at": self.published_at.isoformat(),
            "rulesets": {n: dict(r) for n, r in sorted(self.rulesets.items())},
        }

    def ruleset_digest(self, name: str) -> str | None:
        entry = self.rulesets.get(name)
        return entry["digest"] if entry else None


@dataclass(frozen=True)
class Version:
    """A version with its files (file name -> text)."""

    info: VersionInfo
    files: Mapping[str, str]


class PublishRejected(Exception):
    """The files did not pass the gate: nothing was stored, nothing changes anywhere."""

    def __init__(self, result: GateResult):
        self.result = result
        super().__init__("\n".join(result.report()) or "rejected")


class StaleBase(Exception):
    """The edit was based on a digest that is no longer the newest (someone saved meanwhile)."""

    def __init__(self, name: str, base: str | None, current: str | None):
        self.name, self.base, self.current = name, base, current
        super().__init__(
            f"ruleset `{name}` is at {current or 'no version'}, not at the base {base}: "
            "someone published meanwhile; start again from the current version"
        )


@dataclass(frozen=True)
class Published:
    """The outcome of a publish: the newest version, and whether this call made it."""

    info: VersionInfo
    created: bool


def _meta(result: GateResult) -> dict[str, dict[str, str]]:
    return {n: {"file": result.files[n], "digest": d} for n, d in result.rulesets.items()}


def gate_or_raise(gate: Gate, files: Mapping[str, str]) -> GateResult:
    result = gate(files)
    if not result.ok:
        raise PublishRejected(result)
    return result


def merged(
    files: Mapping[str, str],
    info: VersionInfo,
    name: str,
    source: str,
    tests: str | None = None,
) -> dict[str, str]:
    """The set `files` with ruleset `name` replaced by `source` (a new file if it is new),
    and, when `tests` is given, its test cases (``NAME.tests.yaml``) by `tests`."""
    out = dict(files)
    entry = info.rulesets.get(name)
    file = entry["file"] if entry else f"{name}.yaml"
    out[file] = source
    if tests is not None:
        out[cases_file(file)] = tests
    return out


def cases_file(ruleset_file: str) -> str:
    """The name of the test-case file of a ruleset file (`x.yaml` -> `x.tests.yaml`)."""
    stem = ruleset_file.rsplit(".", 1)[0]
    return f"{stem}.tests.yaml"


class RulesetSource:
    """The interface both sources keep (see the module docstring)."""

    kind = ""

    def __init__(self, gate: Gate = check_set):
        self.gate = gate

    def head(self) -> Version | None:
        """The newest version with its files (None: nothing published yet)."""
        raise NotImplementedError

    def publish(
        self, files: Mapping[str, str], *, who: str, note: str = "", base: str | None = None
    ) -> Published:
        """A whole new set, gated; `base` (a set digest), when given, must be the newest."""
        raise NotImplementedError

    def publish_ruleset(
        self,
        name: str,
        source: str,
        *,
        who: str,
        note: str = "",
        base_digest: str | None,
        tests: str | None = None,
    ) -> Published:
        """One ruleset (and, given `tests`, its cases) replaced in the newest set, gated;
        StaleBase unless the ruleset is at `base_digest`."""
        raise NotImplementedError

    def versions(self, name: str | None = None, limit: int = 100) -> list[VersionInfo]:
        """Newest first; with `name`, the versions in which that ruleset changed."""
        raise NotImplementedError

    def ruleset_text(self, name: str, digest: str) -> str | None:
        """The text of ruleset `name` at `digest`, if a version kept it."""
        raise NotImplementedError

    def changes(self, served: Callable[[], int | None]) -> AsyncIterator[int]:
        """Yields the newest version number whenever it is not the one `served()` says."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


def _changed_versions(infos: list[VersionInfo], name: str) -> list[VersionInfo]:
    """Of versions newest first, those where ruleset `name` differs from the one before."""
    out: list[VersionInfo] = []
    older = list(reversed(infos))
    previous: str | None = None
    for info in older:
        d = info.ruleset_digest(name)
        if d is not None and d != previous:
            out.append(info)
        previous = d
    return list(reversed(out))


# ---------------------------------------------------------------------------- folder


class FolderSource(RulesetSource):
    """The rulesets folder, with the run's generation shared by the workers of one server."""

    kind = "dir"
    GENERATION = "rulesets-generation.json"

    def __init__(
        self,
        folder: Path,
        run_dir: Path | None = None,
        *,
        gate: Gate = check_set,
        poll_seconds: float = 0.25,
    ):
        super().__init__(gate)
        self.folder = Path(folder)
        self.run_dir = Path(run_dir) if run_dir else None
        self.poll_seconds = poll_seconds

    # -- the folder itself
    def read_folder(self) -> dict[str, str]:
        """The folder's files now (RulesetError if there is no ruleset)."""
        return read_set(self.folder)

    def folder_version(self, files: Mapping[str, str]) -> Version:
        """The folder's files as version 0 (RulesetError if a ruleset does not compile)."""
        return Version(VersionInfo("dir", 0, set_digest(files), set_meta(files)), dict(files))

    # -- the run's generation
    @property
    def _path(self) -> Path | None:
        return self.run_dir / self.GENERATION if self.run_dir else None

    @contextlib.contextmanager
    def _locked(self) -> Any:
        assert self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / (self.GENERATION + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def generation(self) -> Version | None:
        path = self._path
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        info = VersionInfo(
            "dir",
            int(data["version"]),
            data["digest"],
            data["rulesets"],
            data.get("who", ""),
            data.get("note", ""),
            datetime.fromisoformat(data["published_at"]),
        )
        return Version(info, data["files"])

    def commit(
        self,
        files: Mapping[str, str],
        rulesets: Mapping[str, Mapping[str, str]],
        *,
        who: str = "",
        note: str = "",
    ) -> VersionInfo:
        """Make `files` (validated by the caller) the run's generation; returns its info.

        Without a run directory (one process, tests) the info is that of the folder.
        """
        digest = set_digest(files)
        if self._path is None:
            return VersionInfo("dir", 0, digest, rulesets, who, note)
        with self._locked():
            current = self.generation()
            if current is not None and current.info.digest == digest:
                return current.info
            info = VersionInfo(
                "dir", (current.info.version if current else 0) + 1, digest, rulesets, who, note
            )
            body = {**info.to_dict(), "files": dict(files)}
            tmp = self._path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self._path)  # whole or not at all, for the readers
            return info

    # -- the interface
    def head(self) -> Version | None:
        generation = self.generation()
        if generation is not None:
            return generation
        return self.folder_version(self.read_folder())

    def publish(
        self, files: Mapping[str, str], *, who: str, note: str = "", base: str | None = None
    ) -> Published:
        result = gate_or_raise(self.gate, files)
        head = self.head()
        if base is not None and head is not None and head.info.digest != base:
            raise StaleBase("(set)", base, head.info.digest)
        if head is not None and head.info.digest == set_digest(files):
            return Published(head.info, False)
        self._write_folder(files, remove=set(head.files) - set(files) if head else set())
        return Published(self.commit(files, _meta(result), who=who, note=note), True)

    def publish_ruleset(
        self,
        name: str,
        source: str,
        *,
        who: str,
        note: str = "",
        base_digest: str | None,
        tests: str | None = None,
    ) -> Published:
        with self._history_locked():  # one save at a time, across the workers of the folder
            head = self.head()
            assert head is not None
            current = head.info.ruleset_digest(name)
            if current != base_digest:
                raise StaleBase(name, base_digest, current)
            files = merged(head.files, head.info, name, source, tests)
            published = self.publish(files, who=who, note=note)
            digest = published.info.ruleset_digest(name)
            if published.created and current is not None and not self._history(name):
                # the text found in the folder, kept so that the first save can be undone
                entry = head.info.rulesets[name]
                self._record(
                    name,
                    head.files[entry["file"]],
                    current,
                    head.info.digest,
                    who="",
                    note="as found in the folder before the first studio save",
                    when=head.info.published_at,
                )
            if published.created and digest is not None:
                self._record(
                    name,
                    source,
                    digest,
                    published.info.digest,
                    who=who,
                    note=note,
                    when=published.info.published_at,
                )
            return published

    # -- the studio's history of a folder (`.kaq-history/`, beside the rulesets)
    HISTORY = ".kaq-history"

    @property
    def history_dir(self) -> Path:
        return self.folder / self.HISTORY

    @contextlib.contextmanager
    def _history_locked(self) -> Any:
        self.history_dir.mkdir(parents=True, exist_ok=True)
        with open(self.history_dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _history(self, name: str) -> list[VersionInfo]:
        """The saved versions of ruleset `name`, newest first."""
        path = self.history_dir / f"{name}.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(lines, 1):
            try:
                r = json.loads(line)
                out.append(
                    VersionInfo(
                        "dir",
                        n,
                        r["set_digest"],
                        {name: {"file": r["file"], "digest": r["digest"]}},
                        r.get("who", ""),
                        r.get("note", ""),
                        datetime.fromisoformat(r["published_at"]),
                    )
                )
            except (ValueError, KeyError, TypeError):  # a torn last line: skipped
                continue
        return list(reversed(out))

    def _record(
        self,
        name: str,
        text: str,
        digest: str,
        set_digest_: str,
        *,
        who: str,
        note: str,
        when: datetime,
    ) -> None:
        """Keep one version of ruleset `name`: its text (once per digest) and a line."""
        texts = self.history_dir / name
        texts.mkdir(parents=True, exist_ok=True)
        kept = texts / (digest.removeprefix("sha256:") + ".yaml")
        if not kept.exists():
            tmp = texts / f".{kept.name}.{os.getpid()}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, kept)
        line = {
            "digest": digest,
            "set_digest": set_digest_,
            "file": f"{name}.yaml",
            "who": who,
            "note": note,
            "published_at": when.isoformat(),
        }
        with open(self.history_dir / f"{name}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    def _write_folder(self, files: Mapping[str, str], remove: set[str]) -> None:
        """Every file written whole (a temporary file renamed over it); all of them are
        written before the first rename, so a failed write (a full disk) changes nothing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        changed: list[tuple[Path, Path]] = []
        try:
            for name, text in files.items():
                target = self.folder / name
                try:
                    if target.read_text(encoding="utf-8") == text:
                        continue
                except (FileNotFoundError, UnicodeDecodeError):
                    pass
                tmp = self.folder / f".{name}.{os.getpid()}.tmp"
                changed.append((tmp, target))
                tmp.write_text(text, encoding="utf-8")
        except BaseException:
            for tmp, _target in changed:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            raise
        for tmp, target in changed:
            os.replace(tmp, target)
        for name in remove:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()

    def versions(self, name: str | None = None, limit: int = 100) -> list[VersionInfo]:
        if name is not None:
            saved = self._history(name)  # the studio's saves, kept beside the folder
            if saved:
                return saved[:limit]
        head = self.head()
        infos = [head.info] if head is not None else []
        return _changed_versions(infos, name)[:limit] if name else infos[:limit]

    def ruleset_text(self, name: str, digest: str) -> str | None:
        if digest.startswith("sha256:") and all(
            c in "0123456789abcdef" for c in digest.removeprefix("sha256:")
        ):
            kept = self.history_dir / name / (digest.removeprefix("sha256:") + ".yaml")
            try:
                text = kept.read_text(encoding="utf-8")
            except (FileNotFoundError, NotADirectoryError):
                text = None
            if text is not None and source_digest(text) == digest:
                return text
        head = self.head()
        if head is None or head.info.ruleset_digest(name) != digest:
            return None
        return head.files.get(head.info.rulesets[name]["file"])

    async def changes(self, served: Callable[[], int | None]) -> AsyncIterator[int]:
        path = self._path
        if path is None:
            return
        seen: tuple[int, int, int] | None = None
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == seen:
                continue
            generation = await asyncio.to_thread(self.generation)
            seen = stamp
            if generation is not None and generation.info.version != served():
                yield generation.info.version

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "folder": str(self.folder)}


# ---------------------------------------------------------------------------- database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kaq_ruleset_versions (
    version bigint PRIMARY KEY,
    digest text NOT NULL,
    files jsonb NOT NULL,
    rulesets jsonb NOT NULL,
    who text NOT NULL,
    note text NOT NULL DEFAULT '',
    published_at timestamptz NOT NULL DEFAULT now()
)
"""
_INFO_COLUMNS = "version, digest, rulesets, who, note, published_at"


def default_who() -> str:
    """Who publishes when nobody says: the OS user at this host."""
    import pwd

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = os.environ.get("USER") or str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class DbSource(RulesetSource):
    """Versions in PostgreSQL; LISTEN/NOTIFY to learn of a new one, polling as a fallback."""

    kind = "db"

    def __init__(self, url: str, *, gate: Gate = check_set, poll_seconds: float = 0.5):
        super().__init__(gate)
        self.url = url
        self.poll_seconds = poll_seconds
        self._schema_ready = False

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        if not self._schema_ready:
            with conn.transaction():
                # two replicas starting at once must not race CREATE TABLE IF NOT EXISTS
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('kaq_ruleset_versions'))")
                conn.execute(_SCHEMA)
            self._schema_ready = True
        return conn

    @staticmethod
    def _info(row: Any) -> VersionInfo:
        version, digest, rulesets, who, note, published_at = row
        return VersionInfo("db", int(version), digest, rulesets, who, note, published_at)

    def _head(self, conn: Any) -> Version | None:
        row = conn.execute(
            f"SELECT {_INFO_COLUMNS}, files FROM kaq_ruleset_versions ORDER BY version DESC LIMIT 1"
        ).fetchone()
        return Version(self._info(row[:6]), row[6]) if row else None

    def head(self) -> Version | None:
        with self._connect() as conn:
            return self._head(conn)

    def get(self, version: int) -> Version | None:
        """One version with its files."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_INFO_COLUMNS}, files FROM kaq_ruleset_versions WHERE version = %s",
                [version],
            ).fetchone()
        return Version(self._info(row[:6]), row[6]) if row else None

    def _store(
        self,
        files: Mapping[str, str],
        result: GateResult,
        *,
        who: str,
        note: str,
        check: Callable[[Version | None], None],
    ) -> Published:
        from psycopg.types.json import Jsonb

        digest = set_digest(files)
        with self._connect() as conn, conn.transaction():
            # one publisher at a time; readers (every replica's poll) are not blocked
            conn.execute("LOCK TABLE kaq_ruleset_versions IN EXCLUSIVE MODE")
            head = self._head(conn)
            check(head)
            if head is not None and head.info.digest == digest:
                return Published(head.info, False)
            version = (head.info.version if head else 0) + 1
            row = conn.execute(
                "INSERT INTO kaq_ruleset_versions (version, digest, files, rulesets, who, note) "
                f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_INFO_COLUMNS}",
                [version, digest, Jsonb(dict(files)), Jsonb(_meta(result)), who, note],
            ).fetchone()
            conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(version)])  # sent at commit
        return Published(self._info(row), True)

    def publish(
        self, files: Mapping[str, str], *, who: str, note: str = "", base: str | None = None
    ) -> Published:
        result = gate_or_raise(self.gate, files)

        def check(head: Version | None) -> None:
            if base is not None and (head.info.digest if head else None) != base:
                raise StaleBase("(set)", base, head.info.digest if head else None)

        return self._store(files, result, who=who, note=note, check=check)

    def publish_ruleset(
        self,
        name: str,
        source: str,
        *,
        who: str,
        note: str = "",
        base_digest: str | None,
        tests: str | None = None,
    ) -> Published:
        for _attempt in range(5):
            head = self.head()
            if head is None:
                raise StaleBase(name, base_digest, None)
            if head.info.ruleset_digest(name) != base_digest:
                raise StaleBase(name, base_digest, head.info.ruleset_digest(name))
            files = merged(head.files, head.info, name, source, tests)
            result = gate_or_raise(self.gate, files)
            based_on = head.info.version

            def check(now: Version | None, based_on: int = based_on) -> None:
                current = now.info.ruleset_digest(name) if now else None
                if current != base_digest:
                    raise StaleBase(name, base_digest, current)
                if now is not None and now.info.version != based_on:
                    raise _Retry  # another ruleset changed meanwhile: merge again

            try:
                return self._store(files, result, who=who, note=note, check=check)
            except _Retry:
                continue
        raise StaleBase(name, base_digest, None)

    def versions(self, name: str | None = None, limit: int = 100) -> list[VersionInfo]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM kaq_ruleset_versions ORDER BY version DESC"
                + ("" if name else " LIMIT %s"),
                [] if name else [limit],
            ).fetchall()
        infos = [self._info(r) for r in rows]
        return _changed_versions(infos, name)[:limit] if name else infos

    def ruleset_text(self, name: str, digest: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT files ->> (rulesets -> %s ->> 'file') FROM kaq_ruleset_versions "
                "WHERE rulesets -> %s ->> 'digest' = %s ORDER BY version DESC LIMIT 1",
                [name, name, digest],
            ).fetchone()
        return row[0] if row else None

    async def changes(self, served: Callable[[], int | None]) -> AsyncIterator[int]:
        import psycopg

        conn: Any = None
        down_since: float | None = None
        try:
            while True:
                try:
                    if conn is None:
                        conn = await psycopg.AsyncConnection.connect(
                            self.url,
                            autocommit=True,
                            connect_timeout=5,
                            application_name=LISTENER_NAME,
                        )
                        await conn.execute(f"LISTEN {CHANNEL}")
                        if down_since is not None:
                            log.info("ruleset notifications back after the connection dropped")
                            down_since = None
                    # wake at a notification, or after one poll interval in any case
                    async for _note in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                        pass
                    cur = await conn.execute(
                        "SELECT max(version) FROM kaq_ruleset_versions",
                    )
                    row = await cur.fetchone()
                except psycopg.Error as exc:
                    if down_since is None:
                        down_since = asyncio.get_running_loop().time()
                        log.warning("ruleset source unreachable, retrying: %s", exc)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.close()
                    conn = None
                    await asyncio.sleep(self.poll_seconds)
                    continue
                newest = row[0] if row else None
                if newest is not None and newest != served():
                    yield int(newest)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


class _Retry(Exception):
    pass


def source_for(settings: Any, *, gate: Gate = check_set) -> RulesetSource:
    """The source `KAQ_RULESET_SOURCE` names, from validated settings (api/settings.py)."""
    if settings.ruleset_source == "db":
        return DbSource(settings.db_url, gate=gate, poll_seconds=settings.ruleset_poll_seconds)
    poll = min(0.25, settings.ruleset_poll_seconds)  # a stat of one file: cheap
    return FolderSource(settings.rulesets, settings.run_dir, gate=gate, poll_seconds=poll)
