"""Loading every ruleset of a folder, all or nothing.

Loading has two steps, so that a server can compile without stopping its engine thread:
:func:`compile_rulesets` (parse, validate, compile: pure Python, any thread) and
:func:`bind_rulesets` (create the durable_rules rulesets: the thread that evaluates).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Diagnostic, RulesetError
from engine.lang.compile import compile_source
from engine.lang.program import Compiled
from engine.runtime.prepared import PreparedRuleset, bind

TESTS_SUFFIX = ".tests.yaml"


@dataclass(frozen=True)
class CompiledFile:
    """One compiled ruleset and the file it came from (None for in-memory text)."""

    compiled: Compiled
    path: Path | None


def ruleset_files(directory: Path) -> list[Path]:
    """The ruleset files of a folder (``*.yaml`` / ``*.yml`` but not ``*.tests.yaml``), sorted."""
    files = [
        p
        for p in sorted(directory.iterdir())
        if p.is_file()
        and p.suffix in (".yaml", ".yml")
        and not p.name.endswith((TESTS_SUFFIX, ".tests.yml"))
    ]
    return files


def shipped_rulesets() -> Path:
    """The default rulesets shipped with kaq: inside the installed package, or the checkout's."""
    try:
        spec = importlib.util.find_spec("engine.default_rulesets")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "rulesets"  # an editable install


def rulesets_folder(
    explicit: Path | str | None = None, env: Mapping[str, str] = os.environ
) -> Path:
    """Where the rulesets are: a flag wins over KAQ_RULESETS, then `rulesets/` in the working
    directory if it exists, else the default rulesets shipped with kaq (api.md, Files)."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit)
    if env.get("KAQ_RULESETS"):
        return Path(env["KAQ_RULESETS"])
    here = Path("rulesets")
    return here if here.is_dir() else shipped_rulesets()


def read_sources(directory: Path | str) -> dict[str, str]:
    """The text of every ruleset file of a folder, keyed by path; RulesetError if unreadable."""
    d = Path(directory)
    if not d.is_dir():
        raise RulesetError(
            [
                Diagnostic(
                    str(d),
                    1,
                    1,
                    "ruleset.no_directory",
                    f"rulesets folder `{d}` not found",
                    "set --rulesets or KAQ_RULESETS",
                )
            ]
        )
    sources = {}
    for p in ruleset_files(d):
        try:
            sources[str(p)] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesetError([Diagnostic(str(p), 1, 1, "ruleset.unreadable", str(exc))]) from None
    return sources


def compile_rulesets(sources: Mapping[str, str], base: Path | None = None) -> list[CompiledFile]:
    """Compile in-memory ruleset texts keyed by file name; RulesetError lists every problem.

    Touches no engine: safe on any thread. `base` says the names are paths of a folder.
    """
    diags: list[Diagnostic] = []
    out: list[CompiledFile] = []
    first_file: dict[str, str] = {}
    if not sources:
        where = str(base) if base else "<sources>"
        raise RulesetError(
            [Diagnostic(where, 1, 1, "ruleset.none", "no ruleset files (*.yaml) found")]
        )
    for file, text in sources.items():
        try:
            compiled = compile_source(file, text)
        except RulesetError as exc:
            diags.extend(exc.diagnostics)
            continue
        name = compiled.doc.name
        if name in first_file:
            diags.append(
                Diagnostic(
                    file,
                    1,
                    1,
                    "ruleset.duplicate_name",
                    f"ruleset name `{name}` is also used by {first_file[name]}",
                )
            )
            continue
        first_file[name] = file
        out.append(CompiledFile(compiled, Path(file) if base else None))
    if diags:
        raise RulesetError(diags)
    return out


def bind_rulesets(files: Sequence[CompiledFile]) -> dict[str, PreparedRuleset]:
    """Compiled rulesets bound to the engine, by name; all or nothing.

    Call it on the thread that evaluates (it creates durable_rules rulesets).
    """
    loaded: dict[str, PreparedRuleset] = {}
    try:
        for f in files:
            rs = bind(f.compiled, f.path)
            loaded[rs.name] = rs
    except BaseException:
        for rs in loaded.values():
            rs.close()
        raise
    return loaded


def load_rulesets(directory: Path | str) -> dict[str, PreparedRuleset]:
    """Every ruleset of a folder, or RulesetError listing every problem of every file."""
    return bind_rulesets(compile_rulesets(read_sources(directory), base=Path(directory)))


def load_rulesets_from_sources(
    sources: Mapping[str, str], base: Path | None = None
) -> dict[str, PreparedRuleset]:
    """Rulesets from in-memory text keyed by file name; all or nothing."""
    return bind_rulesets(compile_rulesets(sources, base))
