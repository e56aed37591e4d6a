"""Reading account facts from .json, .jsonl and .csv files, record by record.

Every reader streams: it holds one record (and a bounded read buffer) at a time, whatever
the size of the file, so `kaq evaluate`, `kaq diff` and `kaq portfolio` keep flat memory
on a whole customer base. A `.json` file is one account object, a list of them, or
`{"accounts": [...]}`; the list is parsed item by item. Errors are located: `file:line`
for JSON Lines and CSV, `file[index]` for a JSON list.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.hints import closest
from engine.lang.model import FactDecl
from engine.runtime.facts import coerce_text

SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")
_CHUNK = 1 << 20  # bytes read at a time from a JSON list


@dataclass
class Record:
    """One account as read: where it came from, and its raw facts or a read error."""

    where: str  # "file:line" or "file[index]"
    facts: dict[str, Any] | None
    error: str | None = None
    whole_file: bool = False  # the error concerns the file, not one record


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def read_records(path: Path, decls: Mapping[str, FactDecl] | None = None) -> Iterator[Record]:
    """Records of a facts file; the format follows the suffix. `decls` (the ruleset's fact
    declarations) types the cells of a CSV file."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        yield from _json(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(path)
    elif suffix == ".csv":
        yield from _csv(path, decls or {})
    else:
        raise ValueError(f"{path}: unsupported file type `{suffix}` (use .json, .jsonl or .csv)")


def count_records(path: Path) -> int | None:
    """A cheap record count for the progress bar (lines), or None for .json."""
    if path.suffix.lower() == ".json":
        return None
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n - 1 if path.suffix.lower() == ".csv" else n


def json_shape(path: Path) -> str:
    """`object` (one account), `list` or `accounts` (`{"accounts": [...]}`) of a .json file;
    `unknown` when it is none of them. Reads only as far as it must (to the `accounts` key,
    or through one account object)."""
    try:
        with path.open(encoding="utf-8-sig") as fh:
            s = _Stream(fh)
            first = s.peek()
            if first == "[":
                return "list"
            if first != "{":
                return "unknown"
            s.pos += 1
            while s.peek() not in ("}", ""):
                key = s.value()
                s.expect(":")
                if key == "accounts" and s.peek() == "[":
                    return "accounts"
                s.value()
                if s.peek() == ",":
                    s.pos += 1
            return "object"
    except (ValueError, UnicodeDecodeError, OSError):
        return "unknown"


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


class _Stream:
    """A text buffer over a file that grows on demand, for `raw_decode` item by item."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        self.buf = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        data = self.fh.read(_CHUNK)
        if not data:
            self.eof = True
            return False
        # drop what is consumed, so the buffer stays as small as the record being read
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not white space ('' at the end of the file)."""
        while True:
            self.pos = _skip_ws(self.buf, self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def value(self) -> Any:
        """The next JSON value; raises ValueError if it is not valid JSON."""
        while True:
            self.peek()
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise
            # a number at the very end of the buffer may go on in the next chunk
            if end == len(self.buf) and not self.eof and self.more():
                continue
            self.pos = end
            return value

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise ValueError(f"expected `{ch}`")
        self.pos += 1


def _json(path: Path) -> Iterator[Record]:
    label = str(path)
    try:
        fh = path.open(encoding="utf-8-sig")
    except OSError as exc:
        yield Record(label, None, f"cannot read the file: {exc.strerror or exc}", whole_file=True)
        return
    with fh:
        s = _Stream(fh)
        try:
            first = s.peek()
            if first == "[":
                s.pos += 1
                yield from _items(s, label)
            elif first == "{" and json_shape(path) == "accounts":
                s.pos += 1
                yield from _accounts_wrapper(s, label)
            elif first == "{":
                value = s.value()
                if s.peek() != "":
                    raise ValueError("extra data after the account object")
                yield Record(label, value)
            else:
                yield Record(
                    label,
                    None,
                    'expected an object, a list of objects or {"accounts": [...]}',
                    whole_file=True,
                )
        except (ValueError, UnicodeDecodeError) as exc:
            yield Record(label, None, f"not valid JSON: {exc}", whole_file=True)


def _items(s: _Stream, label: str) -> Iterator[Record]:
    """The items of a JSON list whose `[` is consumed, up to its `]`."""
    index = 0
    if s.peek() == "]":
        s.pos += 1
        return
    while True:
        item = s.value()
        where = f"{label}[{index}]"
        if isinstance(item, dict):
            yield Record(where, item)
        else:
            yield Record(where, None, "an account must be a JSON object")
        index += 1
        nxt = s.peek()
        if nxt == ",":
            s.pos += 1
            continue
        if nxt == "]":
            s.pos += 1
            return
        raise ValueError(f"expected `,` or `]` after item {index - 1}")


def _accounts_wrapper(s: _Stream, label: str) -> Iterator[Record]:
    """`{"accounts": [...], ...}` whose `{` is consumed: the accounts, streamed."""
    seen = False
    while True:
        nxt = s.peek()
        if nxt == "}":
            s.pos += 1
            break
        key = s.value()
        s.expect(":")
        if key == "accounts" and s.peek() == "[":
            s.pos += 1
            seen = True
            yield from _items(s, label)
        else:
            s.value()  # other keys are not accounts
        nxt = s.peek()
        if nxt == ",":
            s.pos += 1
        elif nxt != "}":
            raise ValueError("expected `,` or `}`")
    if not seen:
        raise ValueError('"accounts" is not a list')
    if s.peek() != "":
        raise ValueError("extra data after the object")


def parse_json_line(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """One JSON Lines record: its facts, or why it is not an account (never both).

    The one reader of a JSON Lines account, for `kaq evaluate` and for Spark's executors
    alike: NaN and Infinity are refused, as JSON has no such numbers.
    """
    try:
        item = _DECODER.decode(line)
    except ValueError as exc:
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


def _csv(path: Path, decls: Mapping[str, FactDecl]) -> Iterator[Record]:
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


def iter_accounts(path: Path, decls: Mapping[str, FactDecl] | None = None) -> Iterator[dict]:
    """The account facts of a file, raising ValueError at the first unreadable record."""
    for rec in read_records(path, decls):
        if rec.facts is None:
            raise ValueError(f"{rec.where}: {rec.error}")
        yield rec.facts
