"""Loading every ruleset of a folder, all or nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .errors import Diagnostic, RulesetError
from .prepared import PreparedRuleset, prepare

TESTS_SUFFIX = ".tests.yaml"


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


def load_rulesets(directory: Path | str) -> dict[str, PreparedRuleset]:
    """Every ruleset of a folder, or RulesetError listing every problem of every file."""
    d = Path(directory)
    if not d.is_dir():
        raise RulesetError([Diagnostic(str(d), 1, 1, "ruleset.no_directory", "not a directory")])
    sources = {}
    for p in ruleset_files(d):
        try:
            sources[str(p)] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesetError([Diagnostic(str(p), 1, 1, "ruleset.unreadable", str(exc))]) from None
    return load_rulesets_from_sources(sources, base=d)


def load_rulesets_from_sources(
    sources: Mapping[str, str], base: Path | None = None
) -> dict[str, PreparedRuleset]:
    """Rulesets from in-memory text keyed by file name; all or nothing."""
    diags: list[Diagnostic] = []
    loaded: dict[str, PreparedRuleset] = {}
    first_file: dict[str, str] = {}
    if not sources:
        where = str(base) if base else "<sources>"
        raise RulesetError(
            [Diagnostic(where, 1, 1, "ruleset.none", "no ruleset files (*.yaml) found")]
        )
    for file, text in sources.items():
        try:
            rs = prepare(file, text, Path(file) if base else None)
        except RulesetError as exc:
            diags.extend(exc.diagnostics)
            continue
        if rs.name in loaded:
            diags.append(
                Diagnostic(
                    file,
                    1,
                    1,
                    "ruleset.duplicate_name",
                    f"ruleset name `{rs.name}` is also used by {first_file[rs.name]}",
                )
            )
            rs.close()
            continue
        loaded[rs.name] = rs
        first_file[rs.name] = file
    if diags:
        for rs in loaded.values():
            rs.close()
        raise RulesetError(diags)
    return loaded
