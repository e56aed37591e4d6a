"""`kaq params export` and `kaq params import`: a spreadsheet round trip through the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

from openpyxl import load_workbook
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "rulesets"
    folder.mkdir()
    for f in (ROOT / "rulesets").glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    return folder


def _run(*args: str):
    return CliRunner().invoke(app, ["params", *args])


def test_export_edit_import_writes_the_one_value(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    sheet = tmp_path / "params.xlsx"
    assert _run("export", str(folder), "--out", str(sheet)).exit_code == 0
    book = load_workbook(sheet)
    book["params"]["B2"] = 75  # key_account_min_score, the first param
    book.save(sheet)
    before = (folder / "key-account.yaml").read_text(encoding="utf-8")
    done = _run("import", str(sheet), str(folder))
    assert done.exit_code == 0, done.output
    assert "changed param key_account_min_score" in done.output
    after = (folder / "key-account.yaml").read_text(encoding="utf-8")
    assert after == before.replace(
        "  key_account_min_score:\n    value: 70\n", "  key_account_min_score:\n    value: 75\n"
    )


def test_import_of_a_bad_cell_exits_1_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    sheet = tmp_path / "params.xlsx"
    assert _run("export", str(folder), "--out", str(sheet)).exit_code == 0
    book = load_workbook(sheet)
    book["params"]["B2"] = "75%"
    book.save(sheet)
    before = (folder / "key-account.yaml").read_bytes()
    done = _run("import", str(sheet), str(folder))
    assert done.exit_code == 1
    assert f"{sheet}:params!B2: `key_account_min_score` must be a number" in done.output
    assert (folder / "key-account.yaml").read_bytes() == before


def test_import_check_changes_nothing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    sheet = tmp_path / "params.xlsx"
    _run("export", str(folder), "--out", str(sheet))
    book = load_workbook(sheet)
    book["params"]["B2"] = 72
    book.save(sheet)
    before = (folder / "key-account.yaml").read_bytes()
    done = _run("import", str(sheet), str(folder), "--check")
    assert done.exit_code == 0 and "not written" in done.output
    assert (folder / "key-account.yaml").read_bytes() == before


def test_a_missing_ruleset_or_workbook_exits_1(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert _run("export", str(folder), "--out", "x.xlsx", "--ruleset", "nope").exit_code == 1
    assert _run("import", str(tmp_path / "none.xlsx"), str(folder)).exit_code == 1
