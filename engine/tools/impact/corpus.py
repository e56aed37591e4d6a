"""The accounts of a diff, read one at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .sides import ImpactError


def iter_corpus(path: Path) -> Iterator[dict[str, Any]]:
    """Accounts from a JSON Lines file (one facts object a line), read a line at a time, or
    from a `.json` file holding a list (or `{"accounts": [...]}`), which is read whole.

    A line that is not a facts object raises `ImpactError` naming the file, line and column;
    the accounts before it have been yielded by then.
    """
    if path.suffix == ".json":
        yield from _json_list(path)
        return
    try:
        f = path.open("rb")
    except OSError as e:
        raise ImpactError(f"{path}: {e.strerror or e}") from e
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = _loads(line)
            except json.JSONDecodeError as e:
                raise ImpactError(f"{path}:{lineno}:{e.colno}: {e.msg}") from None
            if not isinstance(item, dict):
                raise ImpactError(f"{path}:{lineno}:1: expected a facts object")
            yield item


def load_corpus(path: Path) -> list[dict[str, Any]]:
    """All the accounts of `path` at once (see `iter_corpus`, which `analyze` reads)."""
    return list(iter_corpus(path))


def _json_list(path: Path) -> list[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImpactError(f"{path}: {e.strerror or e}") from e
    try:
        data = _loads(raw)
    except json.JSONDecodeError as e:
        raise ImpactError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("accounts"), list):
        data = data["accounts"]
    if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
        raise ImpactError(f"{path}: expected a list of facts objects")
    return data


def _loads(raw: bytes) -> Any:
    """orjson for speed; what it refuses goes to the standard library, which reads a few
    things orjson does not (integers past 64 bits, NaN) and, for real errors, says what it
    expected ("Expecting ',' delimiter") where orjson names an internal state."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except UnicodeDecodeError as e:
        raise json.JSONDecodeError(f"not UTF-8 text ({e.reason})", "", 0) from None
