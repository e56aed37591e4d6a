"""The loaded rulesets: an immutable snapshot swapped whole on reload.

A request acquires the current snapshot and keeps it until its response is
done, so a reload never changes the rules under a request in flight. A
replaced snapshot is closed (its durable_rules rulesets freed) once the last
request holding it releases it.

A reload compiles on a thread of its own (parsing, validation and compilation are
pure Python and can take a while on a large or hostile ruleset) and only binds the
compiled rulesets to durable_rules on the engine thread, a step of milliseconds: a
reload, good or bad, never holds up the evaluations of the running rulesets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from engine import PreparedRuleset

from . import engine_thread
from .errors import NotFound, ServiceUnavailable

log = logging.getLogger("kaq.registry")


@dataclass(frozen=True)
class Build:
    """What a compiler may return: the compiled rulesets and where they came from.

    `origin` (the source's version: api/ruleset_source.py `VersionInfo`) is kept on the
    snapshot, so a listing says which published version a worker serves.
    """

    compiled: Any
    origin: Any = None


@dataclass(eq=False)
class Snapshot:
    """One generation of loaded rulesets; never mutated after creation."""

    rulesets: Mapping[str, PreparedRuleset]
    generation: int
    origin: Any = None  # the source's version these rulesets were built from
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    refs: int = 0
    retired: bool = False
    closed: bool = False

    def get(self, name: str) -> PreparedRuleset:
        """The ruleset called `name`, or 404."""
        try:
            return self.rulesets[name]
        except KeyError:
            known = ", ".join(sorted(self.rulesets)) or "none"
            raise NotFound(f"No ruleset named {name!r} is loaded (loaded: {known}).") from None


class Registry:
    """Holds the current snapshot; reloads all-or-nothing; closes old ones after they drain.

    `compiler()` returns compiled rulesets or raises (engine.RulesetError); it runs on a
    thread of its own. `binder(compiled)` returns a dict name -> PreparedRuleset; it and
    every `close()` run on the engine thread.
    """

    def __init__(
        self,
        compiler: Callable[[], Any],
        binder: Callable[[Any], dict[str, Any]],
    ):
        self._compiler = compiler
        self._binder = binder
        self._current: Snapshot | None = None
        self._generation = 0
        self._reload_lock = asyncio.Lock()
        self.on_swap: list[Callable[[Snapshot], None]] = []

    @property
    def current(self) -> Snapshot | None:
        return self._current

    async def reload(
        self,
        compiler: Callable[[], Any] | None = None,
        *,
        commit: Callable[[Any], Any] | None = None,
    ) -> Snapshot:
        """Load every ruleset again; on any error raise and keep serving the current ones.

        `compiler` replaces the registry's own for this load (it may return a `Build`).
        `commit(origin)`, when given, runs after the rulesets are bound and before they are
        swapped in; what it returns becomes the snapshot's origin, and if it raises, the new
        rulesets are freed and the current ones stay (how a worker publishes a generation to
        its siblings only once it has validated it itself).
        """
        async with self._reload_lock:
            built = await asyncio.to_thread(compiler or self._compiler)
            origin = None
            if isinstance(built, Build):
                built, origin = built.compiled, built.origin
            loaded = await engine_thread.run(self._binder, built)
            if commit is not None:
                try:
                    origin = await asyncio.to_thread(commit, origin)
                except BaseException:
                    await engine_thread.run(_close_all, Snapshot(loaded, 0))
                    raise
            self._generation += 1
            new = Snapshot(MappingProxyType(dict(loaded)), self._generation, origin)
            old, self._current = self._current, new
            for callback in self.on_swap:
                callback(new)
            if old is not None:
                old.retired = True
                self._close_if_drained(old)
            log.info(
                "rulesets loaded (generation %d): %s", new.generation, ", ".join(sorted(loaded))
            )
            return new

    def hold(self) -> Lease:
        """The current snapshot, held (not closed) until `Lease.release()`."""
        snap = self._current
        if snap is None:
            raise ServiceUnavailable("No rulesets are loaded yet.")
        snap.refs += 1
        return Lease(self, snap)

    @contextmanager
    def acquire(self) -> Iterator[Snapshot]:
        """The current snapshot, held (not closed) until the block exits."""
        lease = self.hold()
        try:
            yield lease.snapshot
        finally:
            lease.release()

    def _release(self, snap: Snapshot) -> None:
        snap.refs -= 1
        self._close_if_drained(snap)

    def _close_if_drained(self, snap: Snapshot) -> None:
        if snap.retired and snap.refs == 0 and not snap.closed:
            snap.closed = True
            engine_thread.submit(_close_all, snap)

    async def close(self) -> None:
        """Retire the current snapshot at shutdown and wait for its rulesets to be freed."""
        snap, self._current = self._current, None
        if snap is not None and not snap.closed:
            snap.retired = snap.closed = True
            await engine_thread.run(_close_all, snap)


class Lease:
    """A held snapshot; `release()` is idempotent (streams release from two places)."""

    def __init__(self, registry: Registry, snapshot: Snapshot):
        self._registry = registry
        self.snapshot = snapshot
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._registry._release(self.snapshot)


def _close_all(snap: Snapshot) -> None:
    for name, rs in snap.rulesets.items():
        try:
            rs.close()
        except Exception:  # closing must not stop the others from being freed
            log.exception("closing ruleset %s failed", name)
    log.info("rulesets of generation %d closed", snap.generation)
