"""The JSON Schema of the ruleset file format, for editors (`docs/ruleset.schema.json`).

.venv/bin/python -m engine.lang.schema > docs/ruleset.schema.json
"""

from __future__ import annotations

import json
from typing import Any

from engine.lang.model import RulesetDoc


def ruleset_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a ruleset YAML file."""
    schema = RulesetDoc.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://kaq.example/ruleset.schema.json"
    schema["title"] = "kaq ruleset"
    schema["description"] = (
        "A kaq ruleset: facts, params, derived facts, rules and the decision. "
        "See docs/ruleset-format.md."
    )
    return schema


def main() -> None:
    print(json.dumps(ruleset_schema(), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
