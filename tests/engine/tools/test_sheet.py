"""engine.tools.sheet: params and messages out to XLSX and back, comments and layout kept,
every problem located by sheet, row and column."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from engine.tools.sheet import export_workbook, import_workbook

ROOT = Path(__file__).resolve().parents[3]
SOURCE = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")


def _book(data: bytes):
    return load_workbook(io.BytesIO(data))


def _save(book) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _row_of(sheet, name: str) -> int:
    return next(r for r in range(2, sheet.max_row + 1) if sheet.cell(r, 1).value == name)


def test_export_then_import_unchanged_is_the_same_text() -> None:
    result = import_workbook(SOURCE, export_workbook(SOURCE), "key-account")
    assert result.ok and result.changed == [] and result.text == SOURCE


def test_the_export_lists_every_param_with_unit_and_range_and_every_message() -> None:
    book = _book(export_workbook(SOURCE))
    params, messages = book["params"], book["messages"]
    assert [c.value for c in params[1]][:5] == ["name", "value", "unit", "min", "max"]
    row = _row_of(params, "key_account_min_score")
    assert [c.value for c in params[row]][:5] == ["key_account_min_score", 70, "points", 0, 100]
    assert params.cell(row, 7).value == "达到此分数即为大客户"
    assert messages.max_row > 40 and messages.cell(2, 1).value == "qualify.product_fit"


def test_an_import_changes_those_values_alone_and_keeps_comments() -> None:
    book = _book(export_workbook(SOURCE))
    params, messages = book["params"], book["messages"]
    params.cell(_row_of(params, "key_account_min_score"), 2).value = 75
    params.cell(_row_of(params, "max_acquisition_ratio"), 2).value = 0.25
    messages.cell(2, 4).value = "产品对路：{name}要的正是我们卖的。"
    result = import_workbook(SOURCE, _save(book), "key-account")
    assert result.ok, result.problems
    want = (
        SOURCE.replace(
            "  key_account_min_score:\n    value: 70\n", "  key_account_min_score:\n    value: 75\n"
        )
        .replace("    value: 0.30\n", "    value: 0.25\n")
        .replace(
            '"产品对路：{name}要的正是我们卖的，卖法也合它的用。"',
            '"产品对路：{name}要的正是我们卖的。"',
        )
    )
    assert result.text == want
    assert len(result.changed) == 3


@pytest.mark.parametrize(
    ("param", "value", "column_message"),
    [
        ("key_account_min_score", "75%", "must be a number from 0 to 100"),
        ("key_account_min_score", 170, "must be a number from 0 to 100"),
        ("min_recurring_years", 2.5, "must be a whole number"),
        ("economic_min_annual_spend", -1, "at least 0"),
        ("economic_min_annual_spend", 1e300, "at least 0"),
    ],
)
def test_a_bad_value_names_its_sheet_row_and_column(param, value, column_message) -> None:
    book = _book(export_workbook(SOURCE))
    row = _row_of(book["params"], param)
    book["params"].cell(row, 2).value = value
    result = import_workbook(SOURCE, _save(book), "key-account")
    assert not result.ok and result.text == SOURCE
    [problem] = result.problems
    assert (problem.sheet, problem.row, problem.column) == ("params", row, "B")
    assert column_message in problem.message and str(problem).startswith(f"params!B{row}: ")


def test_unknown_rows_empty_messages_and_a_wrong_header_are_located() -> None:
    book = _book(export_workbook(SOURCE))
    book["params"].cell(3, 1).value = "no_such_param"
    book["messages"].cell(4, 3).value = ""
    book["messages"].cell(1, 3).value = "english"
    result = import_workbook(SOURCE, _save(book), "key-account")
    where = {(p.sheet, p.row, p.column) for p in result.problems}
    assert {("params", 3, "A"), ("messages", 4, "C"), ("messages", 1, "C")} <= where


def test_an_error_the_compiler_finds_is_located_in_the_workbook_too() -> None:
    book = _book(export_workbook(SOURCE))
    row = _row_of(book["params"], "weight_product_fit")
    book["params"].cell(row, 2).value = 50  # the weights no longer add up to 100
    result = import_workbook(SOURCE, _save(book), "key-account")
    assert not result.ok
    assert result.diagnostics and any(d["severity"] == "error" for d in result.diagnostics)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a zip", b"PK\x03\x04broken"],
)
def test_what_is_not_a_workbook_is_a_located_problem(data: bytes) -> None:
    result = import_workbook(SOURCE, data, "key-account")
    assert not result.ok and result.problems[0].sheet == "(workbook)" and result.text == SOURCE


def test_a_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/big.xml", b"\0" * 60_000_000)
    result = import_workbook(SOURCE, out.getvalue(), "key-account")
    assert not result.ok and "unpacks to more than" in result.problems[0].message
