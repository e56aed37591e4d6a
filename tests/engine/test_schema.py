"""The published JSON Schema of the ruleset format is current and accepts the default ruleset."""

from __future__ import annotations

import json
from pathlib import Path

from ruamel.yaml import YAML

from engine.schema import ruleset_schema

ROOT = Path(__file__).resolve().parents[2]


def test_published_schema_matches_the_model():
    published = json.loads((ROOT / "docs" / "ruleset.schema.json").read_text(encoding="utf-8"))
    assert published == ruleset_schema(), (
        "run: .venv/bin/python -m engine.schema > docs/ruleset.schema.json"
    )


def test_schema_names_every_top_level_section_of_the_default_ruleset():
    schema = ruleset_schema()
    doc = YAML(typ="safe").load(
        (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    )
    assert set(doc) <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert {"kaq", "name", "version", "facts", "rules", "decision"} <= set(schema["required"])
