"""`kaq publish DIR --db URL`: validate and test a rulesets folder, and store it as a new
version for every replica that serves with `KAQ_RULESET_SOURCE=db` (api.md, Past one
machine).

The gate is `kaq check` and `kaq test` together: every ruleset compiles and binds to the
engine, and every test case of the folder passes. Only then is the folder (its rulesets and
their test cases) stored as the next version, with who published it, when and why; every
replica switches to it within a poll (LISTEN/NOTIFY, else `KAQ_RULESET_POLL_SECONDS`).
Exit 0 when published (or when the newest version already holds these very files), 1 on
any problem, with nothing stored and nothing changed anywhere; 2 on a usage error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli._common import print_diagnostics


def publish(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="rulesets folder [default: $KAQ_RULESETS, else ./rulesets]",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="PostgreSQL URL [env KAQ_DB_URL]", show_default=False),
    ] = None,
    who: Annotated[
        str | None,
        typer.Option("--who", help="who publishes [default: user@host]", show_default=False),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="why: kept with the version")] = "",
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="publish only if the newest version is this one (its set digest)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Validate, test and publish rulesets as a new version for the replicas."""
    import psycopg

    from api.ruleset_source import DbSource, PublishRejected, StaleBase, default_who
    from engine.errors import RulesetError
    from engine.runtime.loader import rulesets_folder
    from engine.tools.gate import check_set, read_set

    url = db or os.environ.get("KAQ_DB_URL", "")
    if not url.startswith(("postgresql://", "postgres://")):
        typer.echo("kaq publish: --db (or KAQ_DB_URL) must be a postgresql:// URL", err=True)
        raise typer.Exit(2)
    folder = rulesets_folder(directory)
    try:
        files = read_set(folder)
    except RulesetError as exc:
        print_diagnostics(exc)
        raise typer.Exit(1) from None
    try:
        source = DbSource(url, gate=lambda fs: check_set(fs, where=folder))
        published = source.publish(files, who=who or default_who(), note=note, base=base)
    except PublishRejected as exc:
        for line in exc.result.report():
            sys.stderr.write(line.rstrip("\n") + "\n")
        sys.stderr.write(
            f"kaq publish: {len(exc.result.diagnostics)} problem(s), "
            f"{len(exc.result.failures)} failed case(s) in {folder}: nothing was published\n"
        )
        raise typer.Exit(1) from None
    except StaleBase as exc:
        typer.echo(f"kaq publish: {exc}: nothing was published", err=True)
        raise typer.Exit(1) from None
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        typer.echo(f"kaq publish: the database does not answer: {first}", err=True)
        raise typer.Exit(1) from None
    info = published.info
    names = ", ".join(f"{n} {r['digest'][:19]}" for n, r in sorted(info.rulesets.items()))
    if published.created:
        typer.echo(f"published version {info.version} ({info.digest}) from {folder}: {names}")
    else:
        typer.echo(f"unchanged: version {info.version} already holds these files ({names})")


def register(app: typer.Typer) -> None:
    """Add `kaq publish` to the app."""
    app.command("publish")(publish)
