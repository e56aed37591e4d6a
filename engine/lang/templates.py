"""Message template syntax: `{name}` and `{name:raw}` placeholders, checked at compile time.

Filling a template with an account's values is the runtime's job (`engine.runtime.render`).
"""

from __future__ import annotations

import string
from functools import lru_cache

_FORMATTER = string.Formatter()


def placeholders(template: str) -> list[tuple[str, str]]:
    """(name, format_spec) of every placeholder; raises ValueError on a malformed template."""
    out = []
    for _literal, field, spec, conversion in _FORMATTER.parse(template):
        if field is None:
            continue
        if conversion:
            raise ValueError(f"conversion `!{conversion}` is not supported")
        if not field.isidentifier():
            raise ValueError(f"placeholder `{{{field}}}` is not a plain name")
        if spec not in ("", "raw"):
            raise ValueError(f"format `:{spec}` is not supported (only `:raw`)")
        out.append((field, spec or ""))
    return out


@lru_cache(maxsize=4096)
def parsed(template: str) -> tuple[tuple[str, str | None, str], ...]:
    """(literal, placeholder or None, format spec) pieces of a template, cached."""
    return tuple((lit, fld, spec or "") for lit, fld, spec, _c in _FORMATTER.parse(template))
