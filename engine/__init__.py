"""kaq's engine: load, validate and compile rulesets; decide and explain account facts.

>>> from engine import load_ruleset
>>> rs = load_ruleset("rulesets/key-account.yaml")      # doctest: +SKIP
>>> rs.decide({"account_id": "BOC-HQ"}).qualification    # doctest: +SKIP
'insufficient_data'
>>> rs.evaluate({"account_id": "BOC-HQ"})["summary"]     # doctest: +SKIP  (explain(decide(...)))
"""

from engine.errors import (
    Diagnostic,
    DigestMismatch,
    EngineError,
    EvaluationError,
    FactsError,
    InternalError,
    KaqError,
    RulesetError,
)
from engine.lang.source import source_digest
from engine.runtime.decide import Decision, RulesetRef
from engine.runtime.loader import (
    bind_rulesets,
    compile_rulesets,
    load_rulesets,
    load_rulesets_from_sources,
    read_sources,
    ruleset_files,
    rulesets_folder,
    shipped_rulesets,
)
from engine.runtime.prepared import VIEWS, PreparedRuleset, load_ruleset, prepare, summary_of

__all__ = [
    "Decision",
    "Diagnostic",
    "DigestMismatch",
    "EngineError",
    "EvaluationError",
    "FactsError",
    "InternalError",
    "KaqError",
    "PreparedRuleset",
    "RulesetError",
    "RulesetRef",
    "VIEWS",
    "bind_rulesets",
    "compile_rulesets",
    "load_ruleset",
    "load_rulesets",
    "load_rulesets_from_sources",
    "prepare",
    "read_sources",
    "ruleset_files",
    "rulesets_folder",
    "shipped_rulesets",
    "source_digest",
    "summary_of",
]
