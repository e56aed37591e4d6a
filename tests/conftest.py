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
