"""Fixtures shared by every test package."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import ruleset_text

import engine


@pytest.fixture
def git() -> Callable[..., str]:
    """Run git in a folder with a fixed, isolated identity; returns its stdout."""

    def run(cwd: Path, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "HOME": str(cwd),
        }
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
        ).stdout

    return run


@pytest.fixture
def prepare_rules() -> Iterator[Callable[..., engine.PreparedRuleset]]:
    """A factory of prepared rulesets built by `builders.ruleset_doc`, closed afterwards."""
    made: list[engine.PreparedRuleset] = []

    def make(rules: list[dict[str, Any]], **kw: Any) -> engine.PreparedRuleset:
        rs = engine.prepare(f"{kw.get('name', 't')}.yaml", ruleset_text(rules, **kw))
        made.append(rs)
        return rs

    yield make
    for rs in made:
        rs.close()


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] Spark session for the whole run (a JVM start costs about 10 s).

    Local executors run this interpreter (the venv kaq is installed in), and driver and
    executors talk over the loopback only.
    """
    import os
    import sys

    from pyspark.sql import SparkSession

    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("kaq tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        if saved is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = saved
