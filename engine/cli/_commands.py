"""The list of CLI command modules, in the order `kaq --help` shows them."""

from __future__ import annotations

import importlib
from types import ModuleType

# Each module defines `register(app: typer.Typer) -> None`.
_NAMES = [
    "evaluate",
    "check",
    "test",
    "diff",
    "fmt",
    "corpus",
    "serve",
]


def modules() -> list[ModuleType]:
    """Import the command modules (lazily, so `kaq --help` stays fast)."""
    return [importlib.import_module(f"{__package__}.{name}") for name in _NAMES]
