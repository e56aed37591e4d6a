"""`kaq publish`: exit 2 on usage, 1 on any problem with nothing stored (publishing itself:
tests/api/test_api_ruleset_source.py and test_api_replicas.py, which have PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]


def kaq_publish(*args: str):
    return CliRunner().invoke(app, ["publish", *args])


def test_publish_needs_a_postgresql_url(tmp_path, monkeypatch):
    monkeypatch.delenv("KAQ_DB_URL", raising=False)
    result = kaq_publish(str(ROOT / "rulesets"), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 2 and "postgresql://" in result.stderr


def test_publish_of_a_folder_without_rulesets_exits_1(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = kaq_publish(str(empty), "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1 and "ruleset.none" in result.stderr


def test_publish_to_a_database_that_does_not_answer_exits_1(tmp_path):
    folder = tmp_path / "rulesets"
    shutil.copytree(ROOT / "rulesets", folder)
    result = kaq_publish(str(folder), "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1 and "does not answer" in result.stderr
