"""The `kaq` command line: one module per command, each with `register(app)`."""

from __future__ import annotations

import typer

from cli import _commands

app = typer.Typer(
    name="kaq",
    help="kaq: rules-driven key-account qualification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in _commands.modules():
    _module.register(app)


def main() -> None:
    """Entry point of the `kaq` console script."""
    app()


__all__ = ["app", "main"]
