"""`kaq check [PATH ...]`: validate and lint rulesets (folders or single files)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cli._common import print_diagnostics
from engine.errors import Diagnostic, RulesetError
from engine.runtime.loader import load_rulesets, load_rulesets_from_sources, rulesets_folder


def _load(path: Path):
    if path.is_dir():
        return load_rulesets(path)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesetError(
                [Diagnostic(str(path), 1, 1, "ruleset.unreadable", str(exc))]
            ) from None
        return load_rulesets_from_sources({str(path): text}, base=path.parent)
    raise RulesetError([Diagnostic(str(path), 1, 1, "ruleset.not_found", "no such file or folder")])


def register(app: typer.Typer) -> None:
    @app.command()
    def check(
        paths: list[Path] = typer.Argument(
            None, help="ruleset folders or files [default: $KAQ_RULESETS, else ./rulesets]"
        ),
    ) -> None:
        """Validate rulesets; problems as file:line:col: code: message. Exit 1 on any error."""
        problems: list[Diagnostic] = []
        for path in paths or [rulesets_folder()]:
            try:
                loaded = _load(path)
            except RulesetError as exc:
                problems.extend(exc.diagnostics)
                continue
            for rs in loaded.values():
                for w in rs.warnings:
                    sys.stderr.write(
                        f"{w.file}:{w.line}:{w.col}: warning: {w.code}: {w.message}"
                        + (f" ({w.hint})" if w.hint else "")
                        + "\n"
                    )
                sys.stdout.write(
                    f"ok  {rs.path}  {rs.name} {rs.version}: {len(rs.rules)} rules, "
                    f"{len(rs.fact_decls)} facts, {len(rs.program.params)} params, "
                    f"{rs.engine_rule_count} engine rules in {rs.level_count} "
                    f"stages  {rs.digest[:19]}\n"
                )
                rs.close()
        if problems:
            print_diagnostics(RulesetError(problems))
            raise typer.Exit(1)
