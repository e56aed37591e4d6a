"""Message template syntax: `{name}`, `{name:raw}` and `{name:word}` placeholders, checked
at compile time. `{name:word}` writes the value followed by the unit word its declaration
gives (`unit_word`): 「{contract_volume:word}」 reads 「50万套」, "{contract_volume:word}"
"500,000 units".

Filling a template with an account's values is the runtime's job (`engine.runtime.render`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
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
        if spec not in ("", "raw", "word"):
            raise ValueError(f"format `:{spec}` is not supported (only `:raw` and `:word`)")
        out.append((field, spec or ""))
    return out


@lru_cache(maxsize=4096)
def parsed(template: str) -> tuple[tuple[str, str | None, str], ...]:
    """(literal, placeholder or None, format spec) pieces of a template, cached."""
    return tuple((lit, fld, spec or "") for lit, fld, spec, _c in _FORMATTER.parse(template))


def doubled_word(
    template: str, words: Mapping[str, Mapping[str, tuple[str, str]]], lang: str
) -> tuple[str, str] | None:
    """(name, word) of a `{name:word}` the template follows with that word again
    (「{x:word}次」 would read 「3次次」), or None."""
    pieces = parsed(template)
    for (_lit, field, spec), (after, _f, _s) in zip(pieces, pieces[1:], strict=False):
        forms = words.get(field or "", {}).get(lang)
        if spec != "word" or forms is None:
            continue
        rest = after.lstrip()
        for w in dict.fromkeys(forms):
            if rest.startswith(w) and (lang == "zh" or not rest[len(w) : len(w) + 1].isalpha()):
                return str(field), w
    return None
