"""kaq's engine: load, validate and compile rulesets; evaluate account facts into verdicts.

>>> from engine import load_ruleset
>>> rs = load_ruleset("rulesets/key-account.yaml")      # doctest: +SKIP
>>> rs.evaluate({"account_id": "BOC-HQ"})["qualification"]  # doctest: +SKIP
'insufficient_data'
"""

from engine.errors import (
    Diagnostic,
    EngineError,
    EvaluationError,
    FactsError,
    InternalError,
    KaqError,
    RulesetError,
)
from engine.runtime.loader import load_rulesets, load_rulesets_from_sources, ruleset_files
from engine.runtime.prepared import PreparedRuleset, load_ruleset, prepare

__all__ = [
    "Diagnostic",
    "EngineError",
    "EvaluationError",
    "FactsError",
    "InternalError",
    "KaqError",
    "PreparedRuleset",
    "RulesetError",
    "load_ruleset",
    "load_rulesets",
    "load_rulesets_from_sources",
    "prepare",
    "ruleset_files",
]
