"""Errors raised by the engine.

The tree, drawn once::

    KaqError                      base of everything the engine raises on purpose
    ├── RulesetError              a ruleset does not load; carries every Diagnostic found
    │                             (the ruleset's author's to fix)
    ├── FactsError                account facts do not validate; carries pydantic-style errors
    │                             (the caller's to fix)
    └── InternalError             kaq failed on valid facts and a valid ruleset: never the
        │                         caller's fault (HTTP 500, logged with its traceback)
        ├── EvaluationError       the evaluation could not decide consistently (the engine
        │   │                     and the explanation disagree, two stages fired)
        │   └── EngineError       durable_rules itself failed (its numeric error codes)
        └── DigestMismatch        a ruleset's text does not hash to the digest it travelled
                                  with (a Spark executor, a published version): refused

Each Diagnostic has a stable `code` (``ruleset.unknown_fact``), a message, a location
``file:line:col`` and, where one helps, a hint. Tests match codes, not text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in a ruleset, located in its source file."""

    file: str
    line: int
    col: int
    code: str
    message: str = field(compare=False)
    hint: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.code}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON answers."""
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


class KaqError(Exception):
    """Base class of the engine's own errors."""

    code = "kaq.error"


class RulesetError(KaqError):
    """A ruleset failed to load; `diagnostics` lists every problem, sorted."""

    code = "ruleset.invalid"

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class FactsError(KaqError):
    """Account facts failed validation; `errors` is a list of {loc, msg, type}."""

    code = "facts.invalid"

    def __init__(self, errors: list[dict[str, Any]], account_id: Any = None):
        self.errors = errors
        self.account_id = account_id
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


class InternalError(KaqError):
    """A failure inside kaq on valid input: a kaq (or ruleset) defect, not the caller's."""

    code = "internal"


class EvaluationError(InternalError):
    """The facts are valid but the evaluation could not decide them consistently."""

    code = "evaluation.failed"


class EngineError(EvaluationError):
    """durable_rules reported an error (or an inconsistency with the explanation)."""

    code = "evaluation.engine"


class DigestMismatch(InternalError):
    """A ruleset's source text does not hash to the digest it was shipped or stored with."""

    code = "ruleset.digest_mismatch"
