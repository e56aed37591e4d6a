"""Helpers shared by CLI commands: finding rulesets, printing diagnostics."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from engine.errors import RulesetError
from engine.runtime.loader import load_rulesets, rulesets_folder
from engine.runtime.prepared import PreparedRuleset

RULESETS_HELP = "rulesets folder [default: $KAQ_RULESETS, else ./rulesets, else the shipped one]"
# soft_wrap: an error is one line whatever the terminal width (rich would otherwise break
# "must be between 0 and 100" in two at 40 columns); the terminal wraps it for the eye
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_diagnostics(exc: RulesetError) -> None:
    """Every diagnostic on its own line, `file:line:col: code: message (hint)`.

    Written without wrapping, whatever the terminal width: editors, CI problem matchers
    and grep read one diagnostic per line.
    """
    for d in exc.diagnostics:
        sys.stderr.write(str(d) + "\n")
    sys.stderr.flush()
    n = len(exc.diagnostics)
    err_console.print(f"{n} problem{'s' if n != 1 else ''} found", style="bold red")


def load_or_exit(directory: Path | None, exit_code: int = 2) -> dict[str, PreparedRuleset]:
    """Load a rulesets folder (None: the default one) or print every problem and exit."""
    try:
        return load_rulesets(rulesets_folder(directory))
    except RulesetError as exc:
        print_diagnostics(exc)
        raise typer.Exit(exit_code) from None


def pick(rulesets: dict[str, PreparedRuleset], name: str) -> PreparedRuleset:
    """One ruleset by name, or a clear message listing the ones there are."""
    if name not in rulesets:
        err_console.print(
            f"error: no ruleset named `{name}`; loaded: {', '.join(sorted(rulesets)) or 'none'}",
            markup=False,
        )
        raise typer.Exit(2)
    return rulesets[name]
