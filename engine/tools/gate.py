"""The gate a set of ruleset files passes before it is published: every ruleset compiles and
binds to the engine, and every test case of the set passes, as `kaq test` runs them.

A *set* is the YAML files of one rulesets folder, by file name: the rulesets
(``NAME.yaml``) and their cases (``NAME.tests.yaml``). Its digest names the whole set:
``sha256:`` over the sorted file names and each file's own digest, so two sets with the
same files have the same digest wherever they are stored.

>>> result = check_set(read_set(Path("rulesets")))        # doctest: +SKIP
>>> result.ok, result.rulesets                             # doctest: +SKIP
(True, {'key-account': 'sha256:c9e1...'})

Binding creates durable_rules rulesets: in a server, run :func:`check_set` on the engine
thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import Diagnostic, RulesetError
from engine.lang.source import source_digest
from engine.runtime.loader import TESTS_SUFFIX, bind_rulesets, compile_rulesets, read_sources
from engine.tools.casetest import (
    PASSED,
    CaseResult,
    discover,
    format_result,
    load_case_file,
    run_suite,
)

CASES_SUFFIXES = (TESTS_SUFFIX, ".tests.yml")


def is_cases_file(name: str) -> bool:
    """Whether a file of a set holds test cases (else it is a ruleset)."""
    return name.endswith(CASES_SUFFIXES)


def read_set(folder: Path | str) -> dict[str, str]:
    """The files of a rulesets folder by file name: its rulesets and their test cases.

    RulesetError when the folder is missing, unreadable or holds no ruleset.
    """
    d = Path(folder)
    files = {Path(p).name: text for p, text in read_sources(d).items()}
    if not files:
        raise RulesetError(
            [Diagnostic(str(d), 1, 1, "ruleset.none", "no ruleset files (*.yaml) found")]
        )
    for p in discover(d):
        try:
            files[p.name] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesetError([Diagnostic(str(p), 1, 1, "ruleset.unreadable", str(exc))]) from None
    return files


def ruleset_files(files: Mapping[str, str]) -> dict[str, str]:
    """The rulesets of a set (its test cases left out)."""
    return {n: t for n, t in files.items() if not is_cases_file(n)}


def set_digest(files: Mapping[str, str]) -> str:
    """The digest of a whole set: the same files give the same digest, in any order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode("utf-8") + b"\0" + source_digest(files[name]).encode() + b"\n")
    return "sha256:" + h.hexdigest()


def set_meta(files: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Ruleset name -> {"file", "digest"} of a set; compiles, binds nothing (any thread).

    RulesetError when a ruleset does not compile.
    """
    return {
        c.compiled.doc.name: {"file": c.compiled.source.file, "digest": c.compiled.digest}
        for c in compile_rulesets(ruleset_files(files))
    }


@dataclass
class GateResult:
    """What the gate found: ruleset diagnostics, failed cases, and the rulesets' digests."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    failures: list[CaseResult] = field(default_factory=list)
    passed: int = 0
    rulesets: dict[str, str] = field(default_factory=dict)  # name -> digest
    files: dict[str, str] = field(default_factory=dict)  # ruleset name -> file name

    @property
    def ok(self) -> bool:
        return not self.diagnostics and not self.failures

    def report(self) -> list[str]:
        """Every problem, one located line (or block) each, as `kaq check`/`kaq test` say it."""
        lines = [str(d) for d in self.diagnostics]
        lines.extend(format_result(r) for r in self.failures)
        return lines


def check_set(files: Mapping[str, str], where: Path | None = None) -> GateResult:
    """Compile and bind every ruleset of the set, then run every case; nothing is kept.

    `where`: the folder the files came from, to locate diagnostics (`rulesets/x.yaml:3:1`).
    """
    result = GateResult()
    if where is not None:
        files = {str(where / n): t for n, t in files.items()}
    try:
        compiled = compile_rulesets(ruleset_files(files))
    except RulesetError as exc:
        result.diagnostics = list(exc.diagnostics)
        return result
    try:
        loaded = bind_rulesets(compiled)
    except RulesetError as exc:
        result.diagnostics = list(exc.diagnostics)
        return result
    try:
        result.rulesets = {name: rs.digest for name, rs in loaded.items()}
        result.files = {c.compiled.doc.name: Path(c.compiled.source.file).name for c in compiled}
        cases = [load_case_file(Path(n), t) for n, t in sorted(files.items()) if is_cases_file(n)]
        suite = run_suite(cases, loaded)
        result.diagnostics = list(suite.file_errors)
        result.failures = [r for r in suite.results if r.status != PASSED]
        result.passed = suite.count(PASSED)
    finally:
        for rs in loaded.values():
            rs.close()
    return result
