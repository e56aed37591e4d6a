"""`kaq check [DIR]`: validate and lint every ruleset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..errors import RulesetError
from ..loader import load_rulesets
from ._common import DEFAULT_RULESETS, print_diagnostics


def register(app: typer.Typer) -> None:
    @app.command()
    def check(
        directory: Path = typer.Argument(DEFAULT_RULESETS, help="folder of ruleset files"),
    ) -> None:
        """Validate every ruleset of DIR; errors as file:line:col: code: message. Exit 1 on any."""
        try:
            loaded = load_rulesets(directory)
        except RulesetError as exc:
            print_diagnostics(exc)
            raise typer.Exit(1) from None
        out = Console(highlight=False)
        for rs in loaded.values():
            engine_rules = len(rs._prog.engine_rules)
            out.print(
                f"ok  {rs.path}  {rs.name} {rs.version}: {len(rs.rules)} rules, "
                f"{len(rs._prog.facts)} facts, {len(rs._prog.params)} params, "
                f"{engine_rules} engine rules in {len(rs._prog.levels)} stages  {rs.digest[:19]}",
                markup=False,
            )
            rs.close()
