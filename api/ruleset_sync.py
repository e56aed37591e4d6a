"""One worker's rulesets kept in step with their source (api/ruleset_source.py).

`RulesetSync` loads the first version at start, follows the source (every new version is
compiled on a thread of its own and bound on the engine thread by the registry, then
swapped in whole), and reloads on demand (`POST /v1/admin/reload`, SIGHUP).

On the folder source, the worker that reloads compiles and binds the folder itself and only
then makes its files the run's generation; the other workers load that generation, the
same files, whatever the folder holds by then. On the database source, `kaq publish` has
validated and tested a version before storing it; every worker loads it when it hears of
it (LISTEN/NOTIFY) or sees it (polling).

A version that fails to load here (it validated where it was published, so this is rare: a
replica running an older kaq, say) is logged with every diagnostic and skipped: the worker
goes on serving what it serves, and tries again only when a newer version appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from .registry import Build, Registry, Snapshot
from .ruleset_source import (
    DbSource,
    FolderSource,
    Published,
    RulesetSource,
    Version,
    VersionInfo,
)

log = logging.getLogger("kaq.rulesets")


class NothingPublished(Exception):
    """The database source holds no version yet (run `kaq publish DIR --db URL`)."""


def build(files: Mapping[str, str], info: VersionInfo, folder: Path | None = None) -> Build:
    """Compile a version's rulesets (pure Python, any thread) with the version as origin."""
    from engine.runtime.loader import compile_rulesets
    from engine.tools.gate import ruleset_files

    rulesets = ruleset_files(files)
    if folder is not None:  # diagnostics name the real files
        compiled = compile_rulesets({str(folder / n): t for n, t in rulesets.items()}, folder)
    else:
        compiled = compile_rulesets(rulesets)
    meta = {
        c.compiled.doc.name: {
            "file": Path(c.compiled.source.file).name,
            "digest": c.compiled.digest,
        }
        for c in compiled
    }
    if not info.rulesets:
        info = VersionInfo(
            info.source, info.version, info.digest, meta, info.who, info.note, info.published_at
        )
    return Build(compiled, info)


class RulesetSync:
    """Feeds a registry from a source: first load, follow, reload."""

    def __init__(self, source: RulesetSource, registry: Registry):
        self.source = source
        self.registry = registry
        self._skipped: int | None = None  # a version that failed to load here
        self._task: asyncio.Task[None] | None = None
        self.switches = 0

    @property
    def served(self) -> VersionInfo | None:
        snap = self.registry.current
        return snap.origin if snap is not None else None

    def served_version(self) -> int | None:
        info = self.served
        return info.version if info is not None else None

    # -- loading
    async def _reload(self, what: str, compiler: Any, commit: Any = None) -> Snapshot:
        """A registry reload, its failure logged once with every diagnostic."""
        try:
            return await self.registry.reload(compiler, commit=commit)
        except Exception as exc:
            stay = self.registry.current is not None
            log.error(
                "loading %s failed; %s:\n%s",
                what,
                "the running rulesets stay" if stay else "nothing to serve",
                exc,
            )
            raise

    async def _load_version(self, version: Version) -> Snapshot:
        folder = self.source.folder if isinstance(self.source, FolderSource) else None
        what = f"version {version.info.version} of the {self.source.kind} source"
        return await self._reload(what, lambda: build(version.files, version.info, folder))

    async def _load_folder(self) -> Snapshot:
        """Folder source: compile and bind the folder here, then make it the generation."""
        assert isinstance(self.source, FolderSource)
        source = self.source
        files = await asyncio.to_thread(source.read_folder)
        info = VersionInfo("dir", 0, _digest(files), {})

        def commit(origin: VersionInfo) -> VersionInfo:
            return source.commit(files, origin.rulesets, note="reloaded from the folder")

        what = f"the rulesets in {source.folder}"
        return await self._reload(what, lambda: build(files, info, source.folder), commit)

    async def start(self) -> Snapshot:
        """The first load; raises when there is nothing valid to serve."""
        if isinstance(self.source, FolderSource):
            try:
                return await self._load_folder()
            except Exception:
                generation = await asyncio.to_thread(self.source.generation)
                if generation is None:
                    raise
                log.error(
                    "the folder does not load; this worker serves the run's generation %d",
                    generation.info.version,
                )
                return await self._load_version(generation)
        head = await asyncio.to_thread(self.source.head)
        if head is None:
            raise NothingPublished(
                "no ruleset version is published in the database yet: "
                "run `kaq publish DIR --db URL` first"
            )
        return await self._load_version(head)

    async def reload(self) -> Snapshot:
        """`POST /v1/admin/reload` and SIGHUP: the folder again, or the newest published."""
        if isinstance(self.source, FolderSource):
            return await self._load_folder()
        head = await asyncio.to_thread(self.source.head)
        if head is None:
            raise NothingPublished("no ruleset version is published in the database yet")
        return await self._load_version(head)

    # -- following the source
    async def _follow(self) -> None:
        async for newest in self.source.changes(self.served_version):
            if newest == self._skipped:
                continue
            try:
                heard = time.time()
                version = await asyncio.to_thread(self._fetch, newest)
                if version is None or version.info.version == self.served_version():
                    continue
                before = self.served
                await self._load_version(version)
                self.switches += 1
                done = time.time()
                log.info(
                    "switched from version %s to version %d (%s) of the %s source, "
                    "%.0f ms after it was published (seen after %.0f ms, loaded in %.0f ms)",
                    before.version if before else "-",
                    version.info.version,
                    version.info.digest,
                    self.source.kind,
                    (done - version.info.published_at.timestamp()) * 1000,
                    (heard - version.info.published_at.timestamp()) * 1000,
                    (done - heard) * 1000,
                )
            except Exception:  # logged with its diagnostics by _reload
                log.warning("version %d is skipped here until a newer one appears", newest)
                self._skipped = newest

    # -- publishing (the studio)
    async def publish_ruleset(
        self,
        name: str,
        source: str,
        *,
        who: str,
        note: str = "",
        base_digest: str | None,
        tests: str | None = None,
    ) -> Published:
        """Publish one edited ruleset through the gate, and serve it here before answering.

        StaleBase (409) and PublishRejected come from the source; the other workers and
        replicas follow within one poll.
        """
        published = await asyncio.to_thread(
            partial(
                self.source.publish_ruleset,
                name,
                source,
                who=who,
                note=note,
                base_digest=base_digest,
                tests=tests,
            )
        )
        await self.catch_up(published.info)
        return published

    async def catch_up(self, info: VersionInfo) -> None:
        """Serve `info`'s version here now, if the follower has not already switched."""
        served = self.served
        if served is not None and served.digest == info.digest:
            return
        if isinstance(self.source, FolderSource) and self.source.run_dir is None:
            await self._load_folder()
            return
        version = await asyncio.to_thread(self._fetch, info.version)
        if version is not None:
            await self._load_version(version)

    def _fetch(self, newest: int) -> Version | None:
        if isinstance(self.source, DbSource):
            return self.source.get(newest)
        return self.source.head()

    def follow(self) -> None:
        """Start following the source in the background (until `stop`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def describe(self) -> dict[str, Any]:
        """What a listing shows: the source and the version this worker serves."""
        info = self.served
        return {
            **self.source.describe(),
            **(info.to_dict() if info else {}),
            "kind": self.source.kind,
        }


def _digest(files: Mapping[str, str]) -> str:
    from engine.tools.gate import set_digest

    return set_digest(files)
