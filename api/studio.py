"""The studio's service: check, try, impact, save and revert one edited ruleset text.

The engine does the work (`engine.tools.studio`, `engine.tools.impact`, the publishing gate
of `api/ruleset_source.py`); this module only chooses threads and keeps two small caches:

- compiled texts by digest (compiling is pure Python; binding to durable_rules happens on
  the engine thread per request and is freed at once, so nothing bound outlives a call);
- the served ruleset's verdicts on a corpus, by ruleset digest, so that an impact at each
  keystroke evaluates the edited side only.

Saving goes through the ruleset source (`RulesetSync.publish_ruleset`): the gate (compile,
bind, every test case), the base-digest check, an atomic write (folder) or a new version
(database), and an all-or-nothing reload; the other workers follow the run's generation.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from engine.lang.model import RULESET_NAME_PATTERN
from engine.lang.program import Compiled
from engine.runtime.prepared import VIEWS, bind
from engine.tools.impact import RulesetSide, analyze
from engine.tools.studio import CheckResult, check_source, file_name, form_of, shipped_corpus

from . import engine_thread
from .errors import Conflict, InvalidBody, NotFound, RulesetRejected
from .registry import Registry
from .ruleset_source import PublishRejected, StaleBase, cases_file
from .ruleset_sync import RulesetSync

COMPILED_CACHE = 8  # texts kept compiled: the served one, the edited one, a few just typed
CORPORA_CACHE = 2  # corpora whose served verdicts are kept: the shipped one and one uploaded
_NAME = re.compile(RULESET_NAME_PATTERN)


def checked_name(value: Any, loc: str = "name") -> str:
    """A ruleset name as the language allows it (so it is safe in a file name), else 422."""
    if not isinstance(value, str) or len(value) > 64 or not _NAME.match(value):
        raise InvalidBody(
            "`name` must be a ruleset name: lower-case letters, digits and dashes.",
            errors=[{"loc": [loc], "msg": "not a ruleset name", "type": "string_pattern"}],
        )
    return value


def _rejected(result: CheckResult) -> RulesetRejected:
    errors = result.errors()
    return RulesetRejected(
        f"{len(errors)} problem(s) in the ruleset; nothing was saved or changed.",
        errors=[
            {"loc": [d["file"], d["line"], d["col"]], "msg": d["message"], "type": d["code"]}
            for d in errors
        ],
        diagnostics=result.diagnostics,
        digest=result.digest,
    )


class Studio:
    """One per app (per worker process)."""

    def __init__(self, registry: Registry, rulesets: RulesetSync):
        self.registry = registry
        self.rulesets = rulesets
        self._compiled: OrderedDict[tuple[str, str], CheckResult] = OrderedDict()
        self._served_verdicts: OrderedDict[str, dict[str, list[Any]]] = OrderedDict()
        self._lock = asyncio.Lock()

    # -- checking
    async def check(self, name: str, source: str) -> CheckResult:
        """Every diagnostic of the text (compiled on a thread; the last few kept)."""
        key = (name, hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest())
        hit = self._compiled.get(key)
        if hit is not None:
            self._compiled.move_to_end(key)
            return hit
        result = await asyncio.to_thread(check_source, name, source)
        self._compiled[key] = result
        while len(self._compiled) > COMPILED_CACHE:
            self._compiled.popitem(last=False)
        return result

    async def form(self, result: CheckResult, source: str) -> dict[str, Any]:
        """Params and messages with the spans of their values (engine.tools.studio.form_of),
        from the tree the check parsed; none for a text that does not compile (the page
        keeps the last form, its spans mapped through the edits since)."""
        if result.compiled is None:
            return {"params": [], "messages": []}
        return await asyncio.to_thread(form_of, source, result.compiled.source.doc)

    async def compiled(self, name: str, source: str) -> Compiled:
        """The compiled text, or 422 with its diagnostics."""
        result = await self.check(name, source)
        if not result.ok or result.compiled is None:
            raise _rejected(result)
        return result.compiled

    async def tests_text(self, name: str) -> str | None:
        """The text of the test cases saved with ruleset `name` in the newest version."""
        head = await asyncio.to_thread(self.rulesets.source.head)
        if head is None or name not in head.info.rulesets:
            return None
        return head.files.get(cases_file(head.info.rulesets[name]["file"]))

    def served(self, name: str) -> tuple[str, str]:
        """(source text, digest) of the ruleset `name` this worker serves, else 404."""
        with self.registry.acquire() as snap:
            rs = snap.get(name)
            return rs.source, rs.digest

    # -- trying
    async def evaluate(self, name: str, source: str, facts: Any, view: str) -> dict[str, Any]:
        """The verdict of the edited text on `facts`, in `view`; nothing is logged."""
        if view not in VIEWS:
            raise InvalidBody(
                f"`view` must be one of {', '.join(VIEWS)}.",
                errors=[{"loc": ["view"], "msg": "unknown view", "type": "enum"}],
            )
        compiled = await self.compiled(name, source)
        return await engine_thread.run(_try_one, compiled, facts, view)

    # -- impact
    async def impact(
        self, name: str, source: str, corpus: str | Sequence[Mapping[str, Any]], top: int
    ) -> dict[str, Any]:
        """The `kaq diff --format json` report of the served ruleset against the edited text."""
        edited = await self.compiled(name, source)  # 422 with diagnostics before any work
        if corpus == "shipped":
            accounts = await asyncio.to_thread(shipped_corpus)
            key = "shipped"
        else:
            accounts = list(corpus)  # type: ignore[arg-type]
            key = "sha256:" + hashlib.sha256(orjson.dumps(accounts)).hexdigest()
        async with self._lock:  # one impact at a time: each is a whole corpus on the engine
            known = self._served_verdicts.get(key)
            if known is None:
                known = self._served_verdicts[key] = {}
            self._served_verdicts.move_to_end(key)
            while len(self._served_verdicts) > CORPORA_CACHE:
                self._served_verdicts.popitem(last=False)
            with self.registry.acquire() as snap:  # the served ruleset, held while in use
                served = snap.get(name)
                base = RulesetSide(label="served", sources={file_name(name): served.source})
                head = RulesetSide(label="edited", sources={file_name(name): source})
                report = await engine_thread.run(
                    _impact, base, head, accounts, name, top, known, served, edited
                )
        report["corpus"] = {
            "name": key if key == "shipped" else "uploaded",
            "accounts": len(accounts),
        }
        return report

    # -- saving
    async def save(
        self,
        name: str,
        source: str,
        base_digest: str | None,
        *,
        who: str,
        note: str,
        tests: str | None = None,
    ) -> dict[str, Any]:
        """Save the text if it validates, its cases pass and `base_digest` is served (409).

        `tests`, when given, is the new text of the ruleset's test cases, saved with it (a
        change that moves a case's expectation on purpose updates the case in the same save).
        """
        await self.compiled(name, source)  # the diagnostics of a bad text, before any lock
        try:
            published = await self.rulesets.publish_ruleset(
                name, source, who=who, note=note, base_digest=base_digest, tests=tests
            )
        except StaleBase as exc:
            raise Conflict(
                f"Ruleset `{name}` was saved by someone else meanwhile: it is now at "
                f"{exc.current or 'no version'}, not at the base {exc.base}. Nothing was saved; "
                "load the current version and make the change again.",
                current_digest=exc.current,
                base_digest=exc.base,
            ) from None
        except PublishRejected as exc:
            result = exc.result
            raise RulesetRejected(
                f"The ruleset does not pass the gate ({len(result.diagnostics)} problem(s), "
                f"{len(result.failures)} failed test case(s)); nothing was saved or changed.",
                errors=[
                    {"loc": [d.file, d.line, d.col], "msg": d.message, "type": d.code}
                    for d in result.diagnostics
                ],
                diagnostics=[{**d.to_dict(), "severity": "error"} for d in result.diagnostics],
                failures=result.report()[len(result.diagnostics) :],
            ) from None
        info = published.info
        return {
            "name": name,
            "digest": info.ruleset_digest(name),
            "saved": published.created,
            "version": info.version,
            "set_digest": info.digest,
            "who": info.who,
            "note": info.note,
            "published_at": info.published_at.isoformat(),
        }

    async def versions(self, name: str) -> list[dict[str, Any]]:
        """The saved versions of `name`, newest first."""
        infos = await asyncio.to_thread(self.rulesets.source.versions, name)
        head = await asyncio.to_thread(self.rulesets.source.head)
        # the source's newest version, not this worker's (it may follow a save a poll late)
        current = head.info.ruleset_digest(name) if head is not None else None
        if current is None:
            raise NotFound(f"No ruleset named {name!r} in the ruleset source.")
        return [
            {
                "digest": i.ruleset_digest(name),
                "version": i.version,
                "published_at": i.published_at.isoformat(),
                "who": i.who,
                "note": i.note,
                "current": i.ruleset_digest(name) == current,
            }
            for i in infos
        ]

    async def revert(
        self, name: str, digest: str, base_digest: str | None, *, who: str, note: str
    ) -> dict[str, Any]:
        """Bring the saved version `digest` back, through the same checks as a save."""
        text = await asyncio.to_thread(self.rulesets.source.ruleset_text, name, digest)
        if text is None:
            raise NotFound(f"No saved version {digest} of ruleset `{name}`.")
        if base_digest is None:
            _served, base_digest = self.served(name)
        return await self.save(
            name, text, base_digest, who=who, note=note or f"brought back {digest[:19]}"
        )


def _try_one(compiled: Compiled, facts: Any, view: str) -> dict[str, Any]:
    rs = bind(compiled)
    try:
        return rs.view(rs.decide(facts), view)
    finally:
        rs.close()


def _impact(
    base: RulesetSide,
    head: RulesetSide,
    accounts: list[dict[str, Any]],
    name: str,
    top: int,
    known: dict[str, list[Any]],
    served: Any,
    edited: Compiled,
) -> dict[str, Any]:
    """On the engine thread: the served ruleset as it is bound, the edited one bound here."""
    rs = bind(edited)
    try:
        prepared = {"base": served, "head": rs}
        return analyze(
            base, head, accounts, ruleset=name, top=top, jobs=1, known=known, prepared=prepared
        )
    finally:
        rs.close()
