"""The published JSON Schema of the ruleset format is current and accepts the default ruleset."""

from __future__ import annotations

import json

from builders import ROOT
from ruamel.yaml import YAML

from engine.lang.schema import ruleset_schema


def test_published_schema_matches_the_model():
    published = json.loads((ROOT / "docs" / "ruleset.schema.json").read_text(encoding="utf-8"))
    assert published == ruleset_schema(), (
        "run: .venv/bin/python -m engine.lang.schema > docs/ruleset.schema.json"
    )


def test_schema_names_every_top_level_section_of_the_default_ruleset():
    schema = ruleset_schema()
    doc = YAML(typ="safe").load(
        (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    )
    assert set(doc) <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert {"kaq", "name", "version", "facts", "rules", "decision"} <= set(schema["required"])


def test_the_default_ruleset_and_the_example_validate_against_the_schema():
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(ruleset_schema())
    for path in (
        ROOT / "rulesets" / "key-account.yaml",
        ROOT / "tests" / "fixtures" / "rulesets" / "mini.yaml",
    ):
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        errors = [f"{list(e.absolute_path)}: {e.message[:120]}" for e in validator.iter_errors(doc)]
        assert errors == [], path.name
