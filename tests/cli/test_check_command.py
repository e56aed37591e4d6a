"""`kaq check`: exit 0 on clean rulesets, 1 with `file:line:col: code:` lines on stderr."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MINI = FIXTURES / "rulesets" / "mini.yaml"
BASE = FIXTURES / "invalid" / "base.yaml"
LOCATED = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<code>[a-z_]+\.[a-z_]+): ")


def kaq_check(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, ["check", *args])


def located(stderr: str) -> list[tuple[str, int, int, str]]:
    out = []
    for line in stderr.splitlines():
        m = LOCATED.match(line)
        if m:
            out.append((Path(m["file"]).name, int(m["line"]), int(m["col"]), m["code"]))
    return out


def test_check_clean_folder_exits_0(tmp_path):
    shutil.copy(MINI, tmp_path / "mini.yaml")
    shutil.copy(BASE, tmp_path / "base.yaml")
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "mini" in result.stdout and "broken" in result.stdout
    assert located(result.stderr) == []


def test_check_reports_every_problem_located_and_exits_1(tmp_path):
    shutil.copy(MINI, tmp_path / "mini.yaml")
    text = BASE.read_text(encoding="utf-8")
    text = text.replace("    segment: big", "    segment: bgi").replace(
        "    when: annual_spend >= min_spend", "    when: anual_spend >= min_spend"
    )
    (tmp_path / "zz.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "aa.yaml").write_text("kaq: 1\nname: [unclosed\n", encoding="utf-8")
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    assert located(result.stderr) == [
        ("aa.yaml", 3, 1, "yaml.syntax"),
        ("zz.yaml", 27, 11, "expr.unknown_name"),
        ("zz.yaml", 31, 14, "ruleset.unknown_segment"),
    ]
    assert "did you mean `annual_spend`?" in result.stderr
    assert "3 problems found" in result.stderr


def test_check_lines_start_with_the_file_path(tmp_path):
    (tmp_path / "one.yaml").write_text("- a list\n", encoding="utf-8")
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'one.yaml'}:1:1: yaml.not_a_mapping: ")


def test_check_missing_folder_exits_1(tmp_path):
    result = kaq_check(str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert [c for *_, c in located(result.stderr)] == ["ruleset.not_found"]


def test_check_accepts_single_files_and_several_paths(tmp_path):
    result = kaq_check(str(ROOT / "rulesets" / "key-account.yaml"), str(ROOT / "rulesets"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("ok  ") == 2


def with_param(folder: Path, name: str, old: str, new: str) -> str:
    """A copy of the default ruleset in `folder` with one param's value line changed;
    returns the text before the param's key."""
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    head, sep, tail = text.partition(f"  {name}:")
    assert sep, name
    (folder / "key-account.yaml").write_text(
        head + sep + tail.replace(f"value: {old}", f"value: {new}", 1), encoding="utf-8"
    )
    return head


def test_check_warns_when_weights_do_not_reach_100(tmp_path):
    with_param(tmp_path, "weight_pays_back", "15", "10")
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 0
    assert ": warning: ruleset.score_below_100: criterion weights add up to 95" in result.stderr


def test_check_refuses_weights_above_100(tmp_path):
    with_param(tmp_path, "weight_pays_back", "15", "40")
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    assert [c for *_, c in located(result.stderr)] == ["ruleset.score_range"]


def test_check_points_a_threshold_written_as_text_at_the_param(tmp_path):
    head = with_param(tmp_path, "key_account_min_score", "70", '"70%"')
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    line = head.count("\n") + 2  # the `value:` line under the param's key
    found = [(c, ln) for _f, ln, _col, c in located(result.stderr)]
    assert found.count(("ruleset.param_type", line)) == 1  # once, though two programs read it
    assert "write the number alone: `value: 70`" in result.stderr


def test_check_empty_folder_exits_1(tmp_path):
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    assert [c for *_, c in located(result.stderr)] == ["ruleset.none"]


def test_check_duplicate_ruleset_names_exit_1(tmp_path):
    shutil.copy(MINI, tmp_path / "a.yaml")
    shutil.copy(MINI, tmp_path / "b.yaml")
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    assert located(result.stderr) == [("b.yaml", 1, 1, "ruleset.duplicate_name")]


def test_check_points_a_portfolio_threshold_written_as_text_at_the_portfolio_param(tmp_path):
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    head, sep, tail = text.partition("    top_fraction:\n      value: 0.2")
    assert sep
    (tmp_path / "key-account.yaml").write_text(
        head + sep.replace("value: 0.2", 'value: "20%"') + tail, encoding="utf-8"
    )
    result = kaq_check(str(tmp_path))
    assert result.exit_code == 1
    line = head.count("\n") + 2  # the `value:` line of the portfolio param
    found = [(c, ln) for _f, ln, _col, c in located(result.stderr)]
    assert found.count(("ruleset.param_type", line)) == 1, result.stderr
    assert "write the number alone: `value: 20`" in result.stderr
