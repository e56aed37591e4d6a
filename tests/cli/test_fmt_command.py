"""`kaq fmt`: rewrites in place, `--check` exit codes, idempotent, comments kept."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

MESSY = """\
kaq: 1
name: demo
rules:
    - when: "x > 1"   # why
      id: segment.big
      kind: segment
      segment: big
facts:
    x: {unit: money, type: number}
"""


def test_check_exits_1_listing_the_files_that_would_change(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(MESSY)
    result = runner.invoke(app, ["fmt", "--check", str(tmp_path)])
    assert result.exit_code == 1
    assert f"would reformat {tmp_path / 'demo.yaml'}" in result.output
    assert (tmp_path / "demo.yaml").read_text() == MESSY


def test_fmt_rewrites_then_check_passes_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(MESSY)
    result = runner.invoke(app, ["fmt", str(path)])
    assert result.exit_code == 0 and "reformatted" in result.output
    once = path.read_text()
    assert "  - id: segment.big\n    kind: segment\n    segment: big\n    when:" in once
    assert "# why" in once
    assert runner.invoke(app, ["fmt", "--check", str(path)]).exit_code == 0
    result = runner.invoke(app, ["fmt", str(path)])
    assert result.exit_code == 0 and result.output == ""
    assert path.read_text() == once


def test_shipped_rulesets_are_stable_under_fmt(tmp_path: Path) -> None:
    copy = tmp_path / "rulesets"
    shutil.copytree(ROOT / "rulesets", copy)
    assert runner.invoke(app, ["fmt", str(copy)]).exit_code == 0
    assert runner.invoke(app, ["fmt", "--check", str(copy)]).exit_code == 0


def test_unparsable_yaml_and_missing_paths_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kaq: [1\n")
    result = runner.invoke(app, ["fmt", str(bad)])
    assert result.exit_code == 2 and "bad.yaml:" in result.output
    assert runner.invoke(app, ["fmt", str(tmp_path / "nope")]).exit_code == 2


def test_hidden_folders_such_as_the_studio_history_are_left_alone(tmp_path: Path) -> None:
    kept = tmp_path / ".kaq-history" / "demo"
    kept.mkdir(parents=True)
    (kept / "abc.yaml").write_text(MESSY)
    (tmp_path / "demo.yaml").write_text(MESSY)
    result = runner.invoke(app, ["fmt", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (kept / "abc.yaml").read_text() == MESSY
    assert (tmp_path / "demo.yaml").read_text() != MESSY
