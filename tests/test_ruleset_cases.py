"""Every case of every ruleset in rulesets/, one pytest test each, id `ruleset::note`.

The cases are data (rulesets/NAME.tests.yaml); `kaq test rulesets` runs the same ones
and adds coverage. Collecting only parses the YAML; the rulesets are compiled once, on
first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.tools.casetest import (
    PASSED,
    CaseFile,
    discover,
    format_result,
    load_case_file,
    run_case,
)

RULESETS = Path(__file__).resolve().parents[1] / "rulesets"


def _params() -> list[Any]:
    params = []
    for path in discover(RULESETS):
        case_file = load_case_file(path)
        if case_file.diagnostics:
            params.append(pytest.param(case_file, None, id=f"{case_file.ruleset}::{path.name}"))
        for case in case_file.cases:
            params.append(pytest.param(case_file, case, id=f"{case_file.ruleset}::{case.note}"))
    return params


@pytest.fixture(scope="module")
def rulesets() -> dict[str, Any]:
    from engine import load_rulesets

    return load_rulesets(RULESETS)


@pytest.mark.parametrize(("case_file", "case"), _params())
def test_ruleset_case(rulesets: dict[str, Any], case_file: CaseFile, case: Any) -> None:
    assert not case_file.diagnostics, "\n".join(str(d) for d in case_file.diagnostics)
    assert case_file.ruleset in rulesets, f"{case_file.path}: no ruleset `{case_file.ruleset}`"
    result = run_case(case, rulesets[case_file.ruleset], str(case_file.path))
    assert result.status == PASSED, format_result(result)
