"""The one "did you mean" helper: a hint naming the closest known name, if one is close."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name`, if any is close enough to be a typo of it."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def suggest(name: str, candidates: Iterable[str], fallback: str | None = None) -> str | None:
    """ "did you mean `x`?" for the closest candidate, else `fallback`.

    >>> suggest("anual_spend", ["annual_spend", "name"])
    'did you mean `annual_spend`?'
    """
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else fallback
