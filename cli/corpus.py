"""`kaq corpus generate`: write a synthetic, reproducible corpus of accounts (JSONL)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def generate(
    n: Annotated[int, typer.Option("--n", min=0, help="Number of accounts.")] = 2000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same file.")
    ] = 42,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (JSON Lines); standard output if omitted."),
    ] = None,
) -> None:
    """Generate realistic synthetic accounts with the facts of the key-account policy."""
    from engine.tools.corpus import iter_accounts, write_jsonl

    if out is None:
        write_jsonl(iter_accounts(n, seed), sys.stdout)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    count = write_jsonl(iter_accounts(n, seed), out)
    typer.echo(f"wrote {count} accounts to {out} (seed {seed})", err=True)


def register(app: typer.Typer) -> None:
    """Add `kaq corpus generate` to the app."""
    corpus_app = typer.Typer(
        name="corpus",
        help="Synthetic account corpora for `kaq diff` and benchmarks.",
        no_args_is_help=True,
    )
    corpus_app.command("generate")(generate)
    app.add_typer(corpus_app, name="corpus")
