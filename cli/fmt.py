"""`kaq fmt`: rewrite ruleset and test-case YAML in the canonical layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fmt(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or directories (default: rulesets/).", show_default=False),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; exit 1 listing the files that would change."),
    ] = False,
) -> None:
    """Format rulesets canonically (key order, 2-space indent); comments are kept."""
    from engine.runtime.loader import rulesets_folder
    from engine.tools.fmt import FmtError, find_yaml_files, format_file

    targets = paths or [rulesets_folder()]
    missing = [p for p in targets if not p.exists()]
    if missing:
        for p in missing:
            typer.echo(f"{p}: no such file or directory", err=True)
        raise typer.Exit(2)

    would_change: list[Path] = []
    errors = 0
    for path in find_yaml_files(targets):
        try:
            result = format_file(path, check=check)
        except (FmtError, UnicodeDecodeError) as e:
            typer.echo(str(e) if isinstance(e, FmtError) else f"{path}: not UTF-8 text", err=True)
            errors += 1
            continue
        if result.changed:
            would_change.append(path)
            typer.echo(f"would reformat {path}" if check else f"reformatted {path}")

    if errors:
        raise typer.Exit(2)
    if check and would_change:
        typer.echo(
            f"{len(would_change)} file(s) would be reformatted; run `kaq fmt` to fix.", err=True
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `kaq fmt` to the app."""
    app.command("fmt")(fmt)
