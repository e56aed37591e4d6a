"""`kaq params export DIR --out FILE.xlsx` and `kaq params import FILE.xlsx DIR`: a ruleset's
params and messages as a spreadsheet for sales ops, and back into its YAML (comments kept)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli._common import print_diagnostics


def _ruleset_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        typer.echo(f"kaq params: {path}: no such ruleset file", err=True)
        raise typer.Exit(1)
    return path


def export(
    folder: Annotated[Path, typer.Argument(help="The rulesets folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The workbook to write (.xlsx).")],
    ruleset: Annotated[str, typer.Option("--ruleset", help="Ruleset name.")] = "key-account",
) -> None:
    """Write the params and messages of a ruleset as an XLSX workbook."""
    from engine.tools.sheet import export_workbook

    path = _ruleset_file(folder, ruleset)
    data = export_workbook(path.read_text(encoding="utf-8"))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    typer.echo(f"wrote the params and messages of {path} to {out}", err=True)


def import_(
    workbook: Annotated[Path, typer.Argument(help="The workbook to read (.xlsx).")],
    folder: Annotated[Path, typer.Argument(help="The rulesets folder.")],
    ruleset: Annotated[str, typer.Option("--ruleset", help="Ruleset name.")] = "key-account",
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; say what would change.")
    ] = False,
) -> None:
    """Read params and messages back from a workbook; the YAML keeps its comments and layout.

    Nothing is written unless every cell is valid and the ruleset still checks clean
    (exit 1 naming the sheet, row and column of each problem).
    """
    from engine.errors import Diagnostic, RulesetError
    from engine.tools.sheet import import_workbook

    path = _ruleset_file(folder, ruleset)
    try:
        data = workbook.read_bytes()
    except OSError as exc:
        typer.echo(f"kaq params: {workbook}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    result = import_workbook(path.read_text(encoding="utf-8"), data, ruleset)
    for p in result.problems:
        typer.echo(f"{workbook}:{p}", err=True)
    errors = [d for d in result.diagnostics if d["severity"] == "error"]
    if errors:
        print_diagnostics(
            RulesetError(
                [
                    Diagnostic(str(path), d["line"], d["col"], d["code"], d["message"], d["hint"])
                    for d in errors
                ]
            )
        )
    if not result.ok:
        raise typer.Exit(1)
    for what in result.changed:
        typer.echo(f"changed {what}")
    if check or not result.changed:
        typer.echo(f"{len(result.changed)} change(s); {path} not written" if check else "no change")
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(result.text, encoding="utf-8")
    os.replace(tmp, path)
    typer.echo(f"wrote {path}: {len(result.changed)} change(s); run `kaq test` next")


def register(app: typer.Typer) -> None:
    """Add `kaq params export` and `kaq params import` to the app."""
    params_app = typer.Typer(
        name="params",
        help="A ruleset's params and messages as an XLSX spreadsheet, and back.",
        no_args_is_help=True,
    )
    params_app.command("export")(export)
    params_app.command("import")(import_)
    app.add_typer(params_app, name="params")
