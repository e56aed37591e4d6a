"""The list of CLI command modules, in the order `kaq --help` shows them."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# Each module defines `register(app: typer.Typer) -> None`.
_NAMES = [
    "evaluate",
    "check",
    "test",
    "diff",
    "portfolio",
    "fmt",
    "params",
    "corpus",
    "serve",
    "publish",
    "log",
    "spark",
]


def modules() -> list[ModuleType]:
    """Import the command modules (lazily, so `kaq --help` stays fast)."""
    found = []
    for name in _NAMES:
        qualified = f"{__package__}.{name}"
        if importlib.util.find_spec(qualified) is not None:
            found.append(importlib.import_module(qualified))
    return found
