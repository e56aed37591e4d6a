"""A ruleset's params and messages as an XLSX workbook, and back (`kaq params`, the studio).

Export writes two sheets: ``params`` (name, value, unit, allowed range, what it is, in both
languages) and ``messages`` (rule, which message, English, Chinese). Import reads them back
into the ruleset's text by replacing the characters of each changed value alone (the spans
of `engine.tools.studio.form_of`), so the YAML keeps its comments and layout; then the text
is checked as `kaq check` checks it. Every problem names the sheet, the row and the column::

    params!B4: `key_account_min_score` must be a number from 0 to 100, not "75%"

Example::

    data = export_workbook(text)
    result = import_workbook(text, data)
    if result.ok:
        Path("rulesets/key-account.yaml").write_text(result.text)
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from typing import Any

from engine.limits import MAX_MAGNITUDE
from engine.tools.studio import check_source, form_of

__all__ = ["SheetProblem", "SheetResult", "export_workbook", "import_workbook"]

PARAMS = "params"
MESSAGES = "messages"
PARAM_COLUMNS = ("name", "value", "unit", "min", "max", "description_en", "description_zh")
MESSAGE_COLUMNS = ("rule", "message", "en", "zh")
MAX_WORKBOOK_BYTES = 5_000_000  # a workbook is a zip: bounded before and after unpacking
MAX_UNPACKED_BYTES = 50_000_000
MAX_ROWS = 5_000


@dataclass(frozen=True)
class SheetProblem:
    """One problem of an imported workbook, located in it."""

    sheet: str
    row: int
    column: str  # a letter, as the spreadsheet shows it
    message: str

    def __str__(self) -> str:
        return f"{self.sheet}!{self.column}{self.row}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "message": self.message,
        }


@dataclass
class SheetResult:
    """The ruleset's text with the workbook's values, and what was wrong (nothing saved)."""

    text: str
    problems: list[SheetProblem] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "param NAME", "message RULE KEY LANG"
    diagnostics: list[dict[str, Any]] = field(default_factory=list)  # of the new text

    @property
    def ok(self) -> bool:
        return not self.problems and not any(d["severity"] == "error" for d in self.diagnostics)


def _letter(index: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[index]


def export_workbook(text: str) -> bytes:
    """The params and messages of a ruleset text as XLSX bytes."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    form = form_of(text)
    book = Workbook()
    params = book.active
    assert params is not None
    params.title = PARAMS
    params.append(list(PARAM_COLUMNS))
    for p in form["params"]:
        rng = p["range"] or {}
        value = p["value"]
        params.append(
            [
                p["name"],
                value if not isinstance(value, list) else json.dumps(value, ensure_ascii=False),
                p["unit"] or "",
                rng.get("min"),
                rng.get("max"),
                (p["label"] or {}).get("en", ""),
                (p["label"] or {}).get("zh", ""),
            ]
        )
    messages = book.create_sheet(MESSAGES)
    messages.append(list(MESSAGE_COLUMNS))
    for m in form["messages"]:
        messages.append([m["rule"], m["key"], m["en"]["value"], m["zh"]["value"]])
    for sheet, widths in ((params, (34, 14, 10, 8, 8, 50, 40)), (messages, (34, 22, 80, 60))):
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        for i, width in enumerate(widths):
            sheet.column_dimensions[_letter(i)].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _open(data: bytes) -> tuple[Any, list[SheetProblem]]:
    """The workbook, or why it cannot be read (a zip bomb and non-XLSX bytes included)."""
    from openpyxl import load_workbook

    def refused(message: str) -> tuple[Any, list[SheetProblem]]:
        return None, [SheetProblem("(workbook)", 1, "A", message)]

    if len(data) > MAX_WORKBOOK_BYTES:
        return refused(f"the file is larger than {MAX_WORKBOOK_BYTES} bytes")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if sum(i.file_size for i in z.infolist()) > MAX_UNPACKED_BYTES:
                return refused(f"the file unpacks to more than {MAX_UNPACKED_BYTES} bytes")
        return load_workbook(io.BytesIO(data), read_only=True, data_only=True), []
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as exc:
        return refused(f"not an XLSX workbook ({type(exc).__name__}: {exc})"[:300])


def _rows(book: Any, name: str, columns: tuple[str, ...], problems: list[SheetProblem]) -> list:
    if name not in book.sheetnames:
        problems.append(SheetProblem(name, 1, "A", f"the workbook has no sheet `{name}`"))
        return []
    rows = []
    for n, row in enumerate(book[name].iter_rows(values_only=True), 1):
        if n > MAX_ROWS:
            problems.append(SheetProblem(name, n, "A", f"more than {MAX_ROWS} rows"))
            break
        cells = list(row[: len(columns)]) + [None] * (len(columns) - len(row))
        if n == 1:
            header = [str(c).strip() if c is not None else "" for c in cells]
            for i, (got, want) in enumerate(zip(header, columns, strict=True)):
                if got != want:
                    problems.append(
                        SheetProblem(
                            name, 1, _letter(i), f"the header must be `{want}`, not `{got}`"
                        )
                    )
            continue
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        rows.append((n, cells))
    return rows


def _number_text(value: Any) -> str | None:
    """How a cell's number is written in YAML, or None if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value.strip()) if "." in value else int(value.strip())
            except ValueError:
                return None
        else:
            return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) <= MAX_MAGNITUDE:
            return str(int(value))
        return repr(value)
    return str(value)


def _offsets(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def import_workbook(text: str, data: bytes, name: str | None = None) -> SheetResult:
    """The text with the workbook's params and messages written in, checked; never raises
    on a bad workbook (its problems are in the result)."""
    result = SheetResult(text)
    book, result.problems = _open(data)
    if book is None:
        return result
    form = form_of(text)
    params = {p["name"]: p for p in form["params"]}
    messages = {(m["rule"], m["key"]): m for m in form["messages"]}
    edits: list[
        tuple[dict[str, int], str, str, tuple[str, int, str]]
    ] = []  # span, text, what, cell
    problems = result.problems

    for row, (pname, value, *_rest) in _rows(book, PARAMS, PARAM_COLUMNS, problems):
        if not isinstance(pname, str) or pname.strip() not in params:
            problems.append(
                SheetProblem(PARAMS, row, "A", f"no param named `{pname}` in the ruleset")
            )
            continue
        p = params[pname.strip()]
        current = p["value"]
        if isinstance(current, list):
            continue  # list params are edited in the YAML, not in a sheet
        if isinstance(current, bool) or isinstance(current, str):
            written = _text_value(value, current)
            if written is None:
                kind = "true or false" if isinstance(current, bool) else "a text"
                problems.append(SheetProblem(PARAMS, row, "B", f"`{p['name']}` must be {kind}"))
                continue
        else:
            written = _number_text(value)
            rng = p["range"] or {}
            if written is None or not _within(float(written), rng):
                shown = json.dumps(value, ensure_ascii=False, default=str)
                problems.append(
                    SheetProblem(
                        PARAMS, row, "B", f"`{p['name']}` must be {_range_words(rng)}, not {shown}"
                    )
                )
                continue
            if _same_number(written, current):
                continue
        if p["span"] is None:
            problems.append(
                SheetProblem(PARAMS, row, "B", f"`{p['name']}` is not a one-line value")
            )
            continue
        edits.append((p["span"], written, f"param {p['name']}", (PARAMS, row, "B")))

    for row, (rule, key, en, zh) in _rows(book, MESSAGES, MESSAGE_COLUMNS, problems):
        m = messages.get((str(rule).strip() if rule else "", str(key).strip() if key else ""))
        if m is None:
            problems.append(
                SheetProblem(MESSAGES, row, "A", f"no message `{key}` of rule `{rule}`")
            )
            continue
        for lang, value, column in (("en", en, "C"), ("zh", zh, "D")):
            if not isinstance(value, str) or not value.strip():
                problems.append(SheetProblem(MESSAGES, row, column, "a message cannot be empty"))
                continue
            if value == m[lang]["value"]:
                continue
            if m[lang]["span"] is None:
                problems.append(
                    SheetProblem(MESSAGES, row, column, "not a one-line text in the YAML")
                )
                continue
            edits.append(
                (
                    m[lang]["span"],
                    json.dumps(value, ensure_ascii=False),
                    f"message {rule} {key} {lang}",
                    (MESSAGES, row, column),
                )
            )

    if problems:
        return result
    starts = _offsets(text)
    new = text
    for span, written, _what, _cell in sorted(
        edits, key=lambda e: (e[0]["line"], e[0]["col"]), reverse=True
    ):
        start = starts[span["line"] - 1]
        new = new[: start + span["col"] - 1] + written + new[start + span["end_col"] - 1 :]
    result.text = new
    result.changed = [e[2] for e in edits]
    checked = check_source(name or _name_of(text), new)
    result.diagnostics = checked.diagnostics
    # an error on the line of a value the workbook changed is that cell's problem too
    cells = {e[0]["line"]: e[3] for e in edits}
    for d in checked.errors():
        if d["line"] in cells:
            sheet, row, column = cells[d["line"]]
            hint = f" ({d['hint']})" if d.get("hint") else ""
            problems.append(SheetProblem(sheet, row, column, f"{d['code']}: {d['message']}{hint}"))
    return result


def _name_of(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return ""


def _text_value(value: Any, current: Any) -> str | None:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        return None
    if isinstance(value, str) and value:
        return json.dumps(value, ensure_ascii=False)
    return None


def _within(value: float, rng: dict[str, Any]) -> bool:
    if abs(value) > MAX_MAGNITUDE:
        return False
    if rng.get("min") is not None and value < rng["min"]:
        return False
    if rng.get("max") is not None and value > rng["max"]:
        return False
    return not (rng.get("integer") and not float(value).is_integer())


def _range_words(rng: dict[str, Any]) -> str:
    kind = "a whole number" if rng.get("integer") else "a number"
    if rng.get("min") is not None and rng.get("max") is not None:
        return f"{kind} from {rng['min']} to {rng['max']}"
    if rng.get("min") is not None:
        return f"{kind} of at least {rng['min']}"
    return kind


def _same_number(written: str, current: Any) -> bool:
    try:
        return float(written) == float(current)
    except (TypeError, ValueError):
        return False
