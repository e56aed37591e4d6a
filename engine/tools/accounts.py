"""Reading account facts from .json, .jsonl and .csv files, with record-located errors."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.hints import closest
from engine.runtime.facts import coerce_text
from engine.runtime.prepared import PreparedRuleset


@dataclass
class Record:
    """One account as read: where it came from, and its raw facts or a read error."""

    where: str  # "file:line" or "file[index]"
    facts: dict[str, Any] | None
    error: str | None = None
    whole_file: bool = False  # the error concerns the file, not one record


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def read_records(path: Path, rs: PreparedRuleset) -> Iterator[Record]:
    """Records of a facts file; the format follows the suffix."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        yield from _json(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(path)
    elif suffix == ".csv":
        yield from _csv(path, rs)
    else:
        raise ValueError(f"{path}: unsupported file type `{suffix}` (use .json, .jsonl or .csv)")


def count_records(path: Path) -> int | None:
    """A cheap record count for the progress bar (lines), or None for .json."""
    if path.suffix.lower() == ".json":
        return None
    with path.open("rb") as fh:
        n = sum(1 for line in fh if line.strip())
    return n - 1 if path.suffix.lower() == ".csv" else n


def _json(path: Path) -> Iterator[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
        yield Record(f"{path}", None, f"not valid JSON: {exc}", whole_file=True)
        return
    if isinstance(data, dict) and isinstance(data.get("accounts"), list):
        data = data["accounts"]
    if isinstance(data, dict):
        yield Record(f"{path}", data)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield Record(
                f"{path}[{i}]",
                item if isinstance(item, dict) else None,
                None if isinstance(item, dict) else "an account must be a JSON object",
            )
    else:
        yield Record(
            f"{path}", None, 'expected an object, a list of objects or {"accounts": [...]}'
        )


def parse_json_line(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """One JSON Lines record: its facts, or why it is not an account (never both).

    The one reader of a JSON Lines account, for `kaq evaluate` and for Spark's executors
    alike: NaN and Infinity are refused, as JSON has no such numbers.
    """
    try:
        item = json.loads(line, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(item, dict):
        return None, "an account must be a JSON object"
    return item, None


def _jsonl(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            facts, error = parse_json_line(line)
            yield Record(f"{path}:{n}", facts, error)


def _csv(path: Path, rs: PreparedRuleset) -> Iterator[Record]:
    decls = rs.fact_decls
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        unknown = [c for c in (reader.fieldnames or []) if c not in decls]
        if unknown:
            named = []
            for c in unknown:
                close = closest(c.strip().lower().replace(" ", "_"), decls)
                named.append(f"`{c}`" + (f" (did you mean `{close}`?)" if close else ""))
            yield Record(
                f"{path}:1", None, "unknown column(s): " + ", ".join(named), whole_file=True
            )
            return
        for row in reader:
            where = f"{path}:{reader.line_num}"
            facts: dict[str, Any] = {}
            problem = None
            for key, cell in row.items():
                if key is None:
                    problem = "more cells than columns"
                    break
                try:
                    value = coerce_text(decls[key], cell or "")
                except ValueError as exc:
                    problem = f"field `{key}`: {exc}"
                    break
                if value is not None:
                    facts[key] = value
            yield Record(where, None if problem else facts, problem)
