"""durable_rules decides on every Python kaq supports: 3.11, 3.12 and 3.13.

On 3.13, durable_rules 2.0.28 builds only with
``CPPFLAGS=-DPyEval_CallObject=PyObject_CallObject`` (the Makefile sets it; README). Built
without it, its C module does not import there (the symbol is unresolved), so these tests
show which build is loaded and that it really decides, through kaq's one seam. CI
(.ci/run) runs the whole suite on 3.11 and on 3.13 and names the version it means in
``KAQ_EXPECT_PYTHON``, so that two runs on one interpreter cannot pass for both.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import os
import sys
import tomllib
from pathlib import Path

import pytest
from builders import ROOT
from packaging.specifiers import SpecifierSet

from engine.runtime import _durable as D

PYPROJECT = ROOT / "pyproject.toml"
SUPPORTED = ["3.11", "3.12", "3.13"]
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_running_python_is_supported_and_the_one_ci_asked_for() -> None:
    assert RUNNING in SUPPORTED
    expected = os.environ.get("KAQ_EXPECT_PYTHON")
    if expected is not None:
        assert RUNNING == expected, f"CI asked for Python {expected}, this is {sys.version}"


def test_requires_python_admits_exactly_the_supported_versions() -> None:
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    admitted = [v for v in ["3.10", *SUPPORTED, "3.14"] if SpecifierSet(requires).contains(v)]
    assert admitted == SUPPORTED


def test_the_engine_is_durable_rules_2_0_28_built_for_this_interpreter() -> None:
    assert importlib.metadata.version("durable-rules") == "2.0.28"
    built_for = Path(D._dre.__file__ or "").name
    # e.g. durable_rules_engine.cpython-313-x86_64-linux-gnu.so
    assert built_for.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert f".{sys.implementation.cache_tag}-" in built_for


@pytest.fixture
def ruleset():
    rules = {
        "over_ten": (1, {"$gt": {"f0": 10}}),
        "is_x": (1, {"f1": "x"}),
        "later": (2, {"f0": 1}),
    }
    rs = D.EngineRuleset("pyver", rules, atom_count=3)
    yield rs
    rs.close()


@pytest.mark.parametrize(
    ("stage", "fields", "fired"),
    [
        (1, {"f0": 11, "f1": "y"}, ["over_ten"]),
        (1, {"f0": 10.5, "f1": "x"}, ["is_x", "over_ten"]),
        (1, {"f0": 10, "f1": "y"}, []),  # matches nothing: nothing fires, no error
        (1, {"f1": "客户"}, []),
        (2, {"f0": 1}, ["later"]),
    ],
)
def test_durable_rules_fires_exactly_the_matching_rules(
    ruleset: D.EngineRuleset, stage: int, fields: dict[str, object], fired: list[str]
) -> None:
    with ruleset.session() as session:
        if stage > D.FIRST_STAGE:
            assert session.assert_stage(D.FIRST_STAGE, {"f0": 0}) == []
        assert sorted(session.assert_stage(stage, fields)) == fired


def test_one_state_serves_many_evaluations_in_turn(ruleset: D.EngineRuleset) -> None:
    # the session's state is emptied between accounts, so a fact that matches nothing
    # after one that matched still fires nothing
    for n in range(50):
        matches = n % 2 == 0
        with ruleset.session() as session:
            fired = session.assert_stage(1, {"f0": 11 if matches else 6})
        assert fired == (["over_ten"] if matches else [])
