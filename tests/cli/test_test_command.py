"""`kaq test`: exit codes, failure output, coverage minimum, JUnit and JSON reports."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "casetest"
TINY = FIXTURES / "tiny"
BAD = FIXTURES / "bad"

FAILING_CASES = """
ruleset: tiny
bases:
  big: {account_id: T-1, annual_spend: 2000000, years: 8, margin_pct: 25}
cases:
  - note: passes
    base: big
    want: {qualification: key_account}
  - note: wrong qualification
    base: big
    facts: {margin_pct: 5}
    want:
      qualification: not_key_account
      not_fired: [guard.thin_margin]
"""


def kaq(*args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["test", *args])
    return result.exit_code, result.stdout


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    shutil.copy(TINY / "tiny.yaml", tmp_path / "tiny.yaml")
    (tmp_path / "tiny.tests.yaml").write_text(FAILING_CASES, encoding="utf-8")
    return tmp_path


def test_passing_cases_exit_0_and_print_summary_and_coverage():
    code, out = kaq(str(TINY))
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "3 passed, 0 failed"
    assert "coverage tiny: 66.7% of rules fired and not fired (2 of 3;" in out
    # the per-rule table lists the rule that never fired, and only that one
    assert "guard.thin_margin" in out and "never" in out
    assert "segment.loyal  " not in out


def test_coverage_min_fails_on_an_untested_side():
    code, out = kaq(str(TINY), "--coverage-min", "100")
    assert code == 1
    assert "66.7% is below --coverage-min 100" in out
    assert kaq(str(TINY), "--coverage-min", "66.7")[0] == 0


def test_ruleset_without_test_file_counts_as_zero_coverage(tmp_path: Path):
    shutil.copy(TINY / "tiny.yaml", tmp_path / "tiny.yaml")
    code, out = kaq(str(tmp_path))
    assert code == 0
    assert "coverage tiny: 0.0%" in out
    assert out.strip().splitlines()[-1] == "0 passed, 0 failed"
    assert kaq(str(tmp_path), "--coverage-min", "1")[0] == 1


def test_failing_case_prints_expected_vs_actual_and_deciding_facts(failing: Path):
    code, out = kaq(str(failing))
    assert code == 1
    assert "FAILED tiny::wrong qualification" in out
    assert "tiny.tests.yaml:9:11" in out
    lines = out.splitlines()
    row = next(line for line in lines if line.strip().startswith("qualification "))
    assert row.split()[:3] == ["qualification", "not_key_account", "key_account"]
    row = next(line for line in lines if "outcome[guard.thin_margin]" in line)
    assert row.split()[1:3] == ["not_fired", "fired"]
    assert "decision step 2 chose key_account" in out
    assert "margin_pct = 5" in out
    assert "margin_pct < min_margin_pct: 5 < 10 -> true (param min_margin_pct)" in out
    assert lines[-1] == "1 passed, 1 failed"


def test_junit_has_one_suite_per_ruleset_and_one_case_per_case(failing: Path, tmp_path: Path):
    shutil.copy(TINY / "tiny.yaml", failing / "other.yaml")
    (failing / "other.yaml").write_text(
        (TINY / "tiny.yaml").read_text(encoding="utf-8").replace("name: tiny", "name: other"),
        encoding="utf-8",
    )
    report = tmp_path / "out" / "junit.xml"
    code, _ = kaq(str(failing), "--junit", str(report))
    assert code == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"tiny", "other"}
    assert suites["other"].get("tests") == "0"
    tiny = suites["tiny"]
    assert (tiny.get("tests"), tiny.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in tiny.findall("testcase")}
    assert cases["passes"].find("failure") is None
    failure = cases["wrong qualification"].find("failure")
    assert failure is not None
    assert failure.get("message") == ("qualification: expected not_key_account, got key_account")
    assert "outcome[guard.thin_margin]: expected not_fired, got fired" in (failure.text or "")


def test_json_output_has_cases_failures_and_coverage(failing: Path):
    code, out = kaq(str(failing), "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["summary"] == {"passed": 1, "failed": 1, "errors": 0, "file_errors": 0}
    assert [c["id"] for c in data["cases"]] == ["tiny::passes", "tiny::wrong qualification"]
    (failure,) = data["failures"]
    assert failure["mismatches"][0] == {
        "key": "qualification",
        "expected": "not_key_account",
        "actual": "key_account",
        "location": f"{failing / 'tiny.tests.yaml'}:13:22",
        "rules": ["qualify.big"],
    }
    cov = data["coverage"]["rulesets"]["tiny"]
    assert (cov["rules"], cov["covered"], cov["percent"]) == (3, 1, 33.3)


def test_bad_case_file_reports_located_errors_and_runs_the_rest():
    code, out = kaq(str(BAD))
    assert code == 1
    path = BAD / "tiny.tests.yaml"
    for where in (
        "7:11: case.unknown_base: unknown base `bigg` (did you mean `big`?)",
        "10:40: case.unknown_key: unknown key `critera` in `want` (did you mean `criteria`?)",
        "14:15: case.unknown_rule: ruleset `tiny` has no rule `qualify.bigg`",
        "17:13: case.invalid_facts: case `facts that do not validate`: annual_spend:",
    ):
        assert f"{path}:{where}" in out
    assert out.strip().splitlines()[-1] == "1 passed, 0 failed, 4 errors"


def test_unparsable_case_file_is_a_file_error(tmp_path: Path):
    shutil.copy(TINY / "tiny.yaml", tmp_path / "tiny.yaml")
    (tmp_path / "tiny.tests.yaml").write_text("cases: [\n", encoding="utf-8")
    code, out = kaq(str(tmp_path), "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert [d["code"] for d in data["diagnostics"]] == ["case.yaml"]
    assert data["ok"] is False


def test_ruleset_that_does_not_load_exits_1(tmp_path: Path):
    (tmp_path / "broken.yaml").write_text("kaq: 1\nname: broken\n", encoding="utf-8")
    code, out = kaq(str(tmp_path))
    assert code == 1
    assert "broken.yaml:" in out
