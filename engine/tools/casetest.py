"""Ruleset test cases (``NAME.tests.yaml``): load them with locations, run them, compare.

The file format is the one at the end of docs/ruleset-format.md. What this module adds
to it, decided here and nowhere else:

* ``ruleset`` names the ruleset (its ``name:``); when absent it is the file name minus
  ``.tests.yaml``. Several test files may target one ruleset.
* ``bases`` is optional. A case starts from its ``base`` (or from nothing), ``facts``
  replace the base's facts key by key (a shallow merge: a list fact is replaced whole),
  then ``unset`` removes facts. Unsetting a fact the merged facts do not hold is an error
  (it is almost always a typo), and so is naming a fact in both ``facts`` and ``unset``.
* ``note`` is required and unique within a file: it is the test id ``ruleset::note``.
* ``want`` is optional (a case without it only checks that the facts evaluate). Every
  key given is checked exactly:

  - ``qualification``, ``stage`` (``null``: no stage): equal;
  - ``score``: a number, equal within 1e-6;
  - ``segments``: equal as sets;
  - ``guardrails``: ``{rule: severity}``, exactly the fired findings and severities;
  - ``missing_facts``: exactly this list once sorted;
  - ``fired`` / ``not_fired`` / ``not_evaluable``: each listed rule has that trace outcome
    (rules not listed are not checked);
  - ``criteria``: ``{rule: met|partly_met|not_met|not_evaluable}`` for the listed criteria;
  - ``error``: the code of the error evaluation must raise instead of a verdict
    (``facts.invalid`` for facts that fail validation, ``evaluation.failed`` ...), with
    optionally ``error_facts``: exactly the facts the validation errors name. ``error``
    excludes every verdict key.

* A case whose facts fail validation without ``want: {error: ...}`` is an *error* (not a
  failure): a located ``case.invalid_facts`` pointing at the offending fact.

Problems in a test file are :class:`~engine.errors.Diagnostic` s,
``file:line:col: code: message (hint)``, lines and columns 1-based. A problem in one
case marks only that case as an error; a problem in the file itself (YAML syntax, its
shape, an unknown ruleset) stops the whole file. Codes:

=====================  ========================================================
``case.yaml``          not valid YAML, or a duplicate key
``case.shape``         a value of the wrong type, a required key missing
``case.unknown_key``   a key this format does not know (file, base, case, want)
``case.duplicate_note`` two cases of a file share a note
``case.unknown_base``  ``base`` names no entry of ``bases``
``case.unset_absent``  ``unset`` names a fact the case does not have
``case.unknown_ruleset`` ``ruleset`` names no loaded ruleset
``case.unknown_rule``  a rule id the ruleset does not have
``case.wrong_kind``    ``criteria`` on a non-criterion, ``guardrails`` on a non-guardrail
``case.contradiction`` a rule listed under two outcomes
``case.invalid_facts`` the facts fail validation and no error is wanted
=====================  ========================================================

Usage::

    case_file = load_case_file(Path("rulesets/key-account.tests.yaml"))
    results = run_case_file(case_file, load_rulesets(Path("rulesets")))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from engine.errors import Diagnostic, KaqError
from engine.hints import suggest
from engine.lang.model import CRITERION_OUTCOMES, RULE_OUTCOMES, SEVERITIES
from engine.lang.source import load_yaml, plain

SCORE_TOLERANCE = 1e-6
CASE_FILE_SUFFIX = ".tests.yaml"
OUTCOME_KEYS = RULE_OUTCOMES
FILE_KEYS = ("ruleset", "bases", "cases")
CASE_KEYS = ("note", "base", "facts", "unset", "want")
VERDICT_WANT_KEYS = (
    "qualification",
    "score",
    "segments",
    "stage",
    "guardrails",
    "missing_facts",
    "fired",
    "not_fired",
    "not_evaluable",
    "criteria",
)
WANT_KEYS = VERDICT_WANT_KEYS + ("error", "error_facts")

PASSED, FAILED, ERROR = "passed", "failed", "error"


class RulesetLike(Protocol):
    """What running cases needs of a prepared ruleset (engine.PreparedRuleset fits)."""

    @property
    def name(self) -> str: ...

    @property
    def rules(self) -> Sequence[Any]:  # items with `.id` and `.kind`, in ruleset order
        ...

    def evaluate(self, raw: Mapping[str, Any]) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Location:
    """A place in a test file, 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def diagnostic(self, code: str, message: str, hint: str | None = None) -> Diagnostic:
        return Diagnostic(self.file, self.line, self.col, code, message, hint)


@dataclass
class Case:
    """One test case, its facts already resolved from its base."""

    note: str
    index: int
    loc: Location
    facts: dict[str, Any] = field(default_factory=dict)
    want: dict[str, Any] = field(default_factory=dict)
    fact_locs: dict[str, Location] = field(default_factory=dict)
    want_locs: dict[str, Location] = field(default_factory=dict)
    # (want key, rule id) -> where that rule id is written
    rule_locs: dict[tuple[str, str], Location] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass
class CaseFile:
    """A parsed ``*.tests.yaml``; `diagnostics` holds the problems of the file itself."""

    path: Path
    ruleset: str
    cases: list[Case] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    ruleset_loc: Location | None = None


@dataclass
class Mismatch:
    """One wanted value the verdict does not have; `rules` decided it."""

    key: str
    expected: Any
    actual: Any
    rules: list[str] = field(default_factory=list)
    loc: Location | None = None


@dataclass
class CaseResult:
    """The outcome of one case: passed, failed (mismatches) or error (diagnostics)."""

    case: Case
    ruleset: str
    file: str
    status: str
    mismatches: list[Mismatch] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    verdict: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.ruleset}::{self.case.note}"


@dataclass
class FileResult:
    """The results of one test file; a file with `diagnostics` ran no case."""

    case_file: CaseFile
    results: list[CaseResult] = field(default_factory=list)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self.case_file.diagnostics


@dataclass
class SuiteResult:
    """Every test file of a directory, run."""

    files: list[FileResult] = field(default_factory=list)

    @property
    def results(self) -> list[CaseResult]:
        return [r for f in self.files for r in f.results]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def file_errors(self) -> list[Diagnostic]:
        return [d for f in self.files for d in f.diagnostics]

    @property
    def ok(self) -> bool:
        return not self.file_errors and all(r.status == PASSED for r in self.results)

    def verdicts(self, ruleset: str) -> list[dict[str, Any]]:
        """The verdicts the cases of `ruleset` produced (for coverage)."""
        return [r.verdict for r in self.results if r.ruleset == ruleset and r.verdict is not None]


# --------------------------------------------------------------------------- loading


def _hint(word: str, choices: Iterable[str]) -> str | None:
    return suggest(word, choices)


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


class _Reader:
    """Locations inside one ruamel document."""

    def __init__(self, file: str):
        self.file = file

    def at(self, line0: int, col0: int) -> Location:
        return Location(self.file, line0 + 1, col0 + 1)

    def node(self, node: Any, default: Location) -> Location:
        lc = getattr(node, "lc", None)
        if lc is not None and getattr(lc, "line", None) is not None:
            return self.at(lc.line, lc.col)
        return default

    def key(self, mapping: Any, key: str, default: Location) -> Location:
        if isinstance(mapping, CommentedMap):
            try:
                return self.at(*mapping.lc.key(key))
            except (KeyError, TypeError):
                pass
        return default

    def value(self, mapping: Any, key: str, default: Location) -> Location:
        if isinstance(mapping, CommentedMap):
            try:
                return self.at(*mapping.lc.value(key))
            except (KeyError, TypeError):
                pass
        return default

    def item(self, seq: Any, index: int, default: Location) -> Location:
        if isinstance(seq, CommentedSeq):
            try:
                return self.at(*seq.lc.item(index))
            except (KeyError, IndexError, TypeError):
                pass
        return default


def default_ruleset_name(path: Path) -> str:
    """`key-account.tests.yaml` -> `key-account`."""
    name = path.name
    return name[: -len(CASE_FILE_SUFFIX)] if name.endswith(CASE_FILE_SUFFIX) else path.stem


def load_case_file(path: Path, text: str | None = None) -> CaseFile:
    """Parse a test file; problems become located diagnostics, never exceptions."""
    file = str(path)
    reader = _Reader(file)
    top = Location(file, 1, 1)
    result = CaseFile(path=path, ruleset=default_ruleset_name(path))
    try:
        source = path.read_text(encoding="utf-8") if text is None else text
    except (OSError, UnicodeDecodeError) as exc:
        result.diagnostics.append(top.diagnostic("case.yaml", f"cannot read the file: {exc}"))
        return result
    doc, problems = load_yaml(file, source)
    if problems:
        for d in problems:
            loc = Location(file, d.line, d.col)
            result.diagnostics.append(loc.diagnostic("case.yaml", f"invalid YAML: {d.message}"))
        return result
    if not isinstance(doc, Mapping):
        result.diagnostics.append(
            top.diagnostic(
                "case.shape", "a test file is a mapping with `ruleset`, `bases` and `cases`"
            )
        )
        return result

    diags = result.diagnostics
    for key in doc:
        if key not in FILE_KEYS:
            diags.append(
                reader.key(doc, key, top).diagnostic(
                    "case.unknown_key",
                    f"unknown key `{key}` in a test file",
                    _hint(str(key), FILE_KEYS),
                )
            )
    if "ruleset" in doc:
        result.ruleset_loc = reader.value(doc, "ruleset", top)
        if isinstance(doc["ruleset"], str) and doc["ruleset"]:
            result.ruleset = str(doc["ruleset"])
        else:
            diags.append(
                result.ruleset_loc.diagnostic("case.shape", "`ruleset` must be a ruleset name")
            )

    bases: dict[str, tuple[dict[str, Any], dict[str, Location]]] = {}
    raw_bases = doc.get("bases") or {}
    if not isinstance(raw_bases, Mapping):
        diags.append(
            reader.value(doc, "bases", top).diagnostic(
                "case.shape", "`bases` must map base names to facts"
            )
        )
        raw_bases = {}
    for name, facts in raw_bases.items():
        loc = reader.value(raw_bases, name, top)
        if not isinstance(facts, Mapping):
            diags.append(
                loc.diagnostic(
                    "case.shape",
                    f"base `{name}` must be a mapping of facts, not {_type_name(facts)}",
                )
            )
            continue
        bases[str(name)] = (
            {str(k): plain(v) for k, v in facts.items()},
            {str(k): reader.key(facts, k, loc) for k in facts},
        )

    raw_cases = doc.get("cases")
    if raw_cases is None:
        raw_cases = []
    if not isinstance(raw_cases, list):
        diags.append(
            reader.value(doc, "cases", top).diagnostic("case.shape", "`cases` must be a list")
        )
        raw_cases = []
    seen: dict[str, Location] = {}
    for index, raw in enumerate(raw_cases):
        loc = reader.item(raw_cases, index, top)
        case = _load_case(reader, raw, index, loc, bases)
        if case.note in seen:
            case.diagnostics.append(
                case.loc.diagnostic(
                    "case.duplicate_note",
                    f"another case has the note `{case.note}` (at {seen[case.note]});"
                    " notes are test ids",
                )
            )
        else:
            seen[case.note] = case.loc
        result.cases.append(case)
    result.diagnostics.sort()
    return result


def _load_case(
    reader: _Reader,
    raw: Any,
    index: int,
    loc: Location,
    bases: Mapping[str, tuple[dict[str, Any], dict[str, Location]]],
) -> Case:
    case = Case(note=f"case {index + 1}", index=index, loc=loc)
    diags = case.diagnostics
    if not isinstance(raw, Mapping):
        diags.append(
            loc.diagnostic("case.shape", f"a case must be a mapping, not {_type_name(raw)}")
        )
        return case
    case.loc = reader.node(raw, loc)
    for key in raw:
        if key not in CASE_KEYS:
            diags.append(
                reader.key(raw, key, case.loc).diagnostic(
                    "case.unknown_key", f"unknown key `{key}` in a case", _hint(str(key), CASE_KEYS)
                )
            )
    note = raw.get("note")
    if isinstance(note, str) and note.strip():
        case.note = note.strip()
        case.loc = reader.value(raw, "note", case.loc)
    else:
        diags.append(case.loc.diagnostic("case.shape", "a case needs a `note` (its test id)"))

    facts: dict[str, Any] = {}
    if "base" in raw:
        base_loc = reader.value(raw, "base", case.loc)
        base = raw["base"]
        if not isinstance(base, str) or base not in bases:
            diags.append(
                base_loc.diagnostic(
                    "case.unknown_base",
                    f"unknown base `{base}`",
                    _hint(str(base), bases) if isinstance(base, str) else None,
                )
            )
        else:
            base_facts, base_locs = bases[base]
            facts.update(base_facts)
            case.fact_locs.update(base_locs)
    raw_facts = raw.get("facts") or {}
    if not isinstance(raw_facts, Mapping):
        diags.append(
            reader.value(raw, "facts", case.loc).diagnostic(
                "case.shape", f"`facts` must be a mapping, not {_type_name(raw_facts)}"
            )
        )
        raw_facts = {}
    for key, value in raw_facts.items():
        facts[str(key)] = plain(value)
        case.fact_locs[str(key)] = reader.key(raw_facts, key, case.loc)
    raw_unset = raw.get("unset") or []
    if not isinstance(raw_unset, list) or not all(isinstance(u, str) for u in raw_unset):
        diags.append(
            reader.value(raw, "unset", case.loc).diagnostic(
                "case.shape", "`unset` must be a list of fact names"
            )
        )
        raw_unset = []
    for i, name in enumerate(raw_unset):
        item_loc = reader.item(raw_unset, i, case.loc)
        if name in raw_facts:
            diags.append(
                item_loc.diagnostic("case.contradiction", f"`{name}` is both set and unset")
            )
        elif name not in facts:
            diags.append(
                item_loc.diagnostic(
                    "case.unset_absent",
                    f"unset `{name}`: the case has no such fact",
                    _hint(name, facts),
                )
            )
        facts.pop(name, None)
    case.facts = facts

    if "want" in raw:
        want = raw["want"]
        want_loc = reader.value(raw, "want", case.loc)
        if want is None:
            want = {}
        if not isinstance(want, Mapping):
            diags.append(want_loc.diagnostic("case.shape", "`want` must be a mapping"))
        else:
            _load_want(reader, case, want, want_loc)
    diags.sort()
    return case


def _load_want(reader: _Reader, case: Case, want: Mapping[str, Any], want_loc: Location) -> None:
    diags = case.diagnostics
    out: dict[str, Any] = {}
    for key in want:
        key_loc = reader.key(want, key, want_loc)
        value_loc = reader.value(want, key, want_loc)
        value = plain(want[key])
        if key not in WANT_KEYS:
            diags.append(
                key_loc.diagnostic(
                    "case.unknown_key", f"unknown key `{key}` in `want`", _hint(str(key), WANT_KEYS)
                )
            )
            continue
        case.want_locs[key] = value_loc

        def bad(
            expected: str, key: str = key, value: Any = value, loc: Location = value_loc
        ) -> None:
            diags.append(
                loc.diagnostic(
                    "case.shape", f"want `{key}` must be {expected}, not {_type_name(value)}"
                )
            )

        if key in ("qualification", "error"):
            if not isinstance(value, str):
                bad("a string")
                continue
        elif key == "stage":
            if value is not None and not isinstance(value, str):
                bad("a stage name or null")
                continue
        elif key == "score":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                bad("a number")
                continue
        elif key in ("segments", "missing_facts", "error_facts") + OUTCOME_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                bad("a list of names")
                continue
            for i, item in enumerate(value):
                case.rule_locs[(key, item)] = reader.item(want[key], i, value_loc)
        elif key in ("guardrails", "criteria"):
            allowed = SEVERITIES if key == "guardrails" else CRITERION_OUTCOMES
            if not isinstance(value, Mapping):
                bad(f"a mapping of rule ids to {' | '.join(allowed)}")
                continue
            for rule, got in value.items():
                rule_loc = reader.key(want[key], rule, value_loc)
                case.rule_locs[(key, rule)] = rule_loc
                if got not in allowed:
                    diags.append(
                        reader.value(want[key], rule, value_loc).diagnostic(
                            "case.shape",
                            f"`{got}` for `{rule}` is not one of {', '.join(allowed)}",
                            _hint(str(got), allowed),
                        )
                    )
        out[key] = value

    if "error" in out:
        for key in out:
            if key in VERDICT_WANT_KEYS:
                diags.append(
                    reader.key(want, key, want_loc).diagnostic(
                        "case.shape", f"want `error` leaves no verdict to check `{key}` against"
                    )
                )
    elif "error_facts" in out:
        diags.append(
            reader.key(want, "error_facts", want_loc).diagnostic(
                "case.shape", "want `error_facts` needs want `error`"
            )
        )
    listed: dict[str, str] = {}
    for key in OUTCOME_KEYS:
        for rule in out.get(key, []):
            if rule in listed and listed[rule] != key:
                diags.append(
                    case.rule_locs[(key, rule)].diagnostic(
                        "case.contradiction", f"`{rule}` is wanted both {listed[rule]} and {key}"
                    )
                )
            listed.setdefault(rule, key)
    case.want = out


def discover(directory: Path) -> list[Path]:
    """The test files of a rulesets folder, sorted by name."""
    return sorted(p for p in directory.glob(f"*{CASE_FILE_SUFFIX}") if p.is_file())


# --------------------------------------------------------------------------- checking


def check_case(case: Case, rs: RulesetLike) -> list[Diagnostic]:
    """Problems of a case that only the ruleset can tell (unknown rules, wrong kinds)."""
    kinds = {str(r.id): str(r.kind) for r in rs.rules}
    diags: list[Diagnostic] = []
    for (key, rule), loc in case.rule_locs.items():
        if key not in OUTCOME_KEYS + ("guardrails", "criteria"):
            continue
        if rule not in kinds:
            diags.append(
                loc.diagnostic(
                    "case.unknown_rule",
                    f"ruleset `{rs.name}` has no rule `{rule}`",
                    _hint(rule, kinds),
                )
            )
        elif key == "criteria" and kinds[rule] != "criterion":
            diags.append(
                loc.diagnostic("case.wrong_kind", f"`{rule}` is a {kinds[rule]}, not a criterion")
            )
        elif key == "guardrails" and kinds[rule] != "guardrail":
            diags.append(
                loc.diagnostic("case.wrong_kind", f"`{rule}` is a {kinds[rule]}, not a guardrail")
            )
    return sorted(diags)


# --------------------------------------------------------------------------- comparing


def _trace(verdict: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(t["rule"]): t for t in verdict.get("trace") or []}


def _kind_rules(verdict: Mapping[str, Any], kind: str) -> list[str]:
    return [str(t["rule"]) for t in verdict.get("trace") or [] if t.get("kind") == kind]


def compare(
    want: Mapping[str, Any], verdict: Mapping[str, Any], case: Case | None = None
) -> list[Mismatch]:
    """Every wanted value the verdict does not have, in `want` order."""
    trace = _trace(verdict)
    criteria = {str(c["rule"]): c.get("outcome") for c in verdict.get("criteria") or []}
    out: list[Mismatch] = []

    def loc(key: str, rule: str | None = None) -> Location | None:
        if case is None:
            return None
        if rule is not None and (key, rule) in case.rule_locs:
            return case.rule_locs[(key, rule)]
        return case.want_locs.get(key)

    for key, expected in want.items():
        if key in ("qualification", "stage"):
            actual = verdict.get(key)
            if actual != expected:
                rules = (
                    _kind_rules(verdict, "criterion")
                    if key == "qualification"
                    else _kind_rules(verdict, "stage")
                )
                out.append(Mismatch(key, expected, actual, rules, loc(key)))
        elif key == "score":
            actual = verdict.get("score")
            if not isinstance(actual, int | float) or abs(actual - expected) > SCORE_TOLERANCE:
                out.append(
                    Mismatch(key, expected, actual, _kind_rules(verdict, "criterion"), loc(key))
                )
        elif key == "segments":
            actual = verdict.get("segments") or []
            if set(actual) != set(expected):
                out.append(
                    Mismatch(
                        key,
                        sorted(set(expected)),
                        sorted(set(actual)),
                        _kind_rules(verdict, "segment"),
                        loc(key),
                    )
                )
        elif key == "missing_facts":
            actual = list(verdict.get("missing_facts") or [])
            if sorted(expected) != actual:
                differ = set(expected) ^ set(actual)
                rules = [r for r, t in trace.items() if differ & set(t.get("facts") or {})]
                out.append(Mismatch(key, sorted(expected), actual, rules, loc(key)))
        elif key == "guardrails":
            actual = {str(g["rule"]): g.get("severity") for g in verdict.get("guardrails") or []}
            if actual != expected:
                rules = sorted(
                    r for r in set(actual) | set(expected) if actual.get(r) != expected.get(r)
                )
                out.append(Mismatch(key, dict(expected), actual, rules, loc(key)))
        elif key in OUTCOME_KEYS:
            for rule in expected:
                got = trace.get(rule, {}).get("outcome") if rule in trace else "absent from trace"
                if got != key:
                    out.append(Mismatch(f"outcome[{rule}]", key, got, [rule], loc(key, rule)))
        elif key == "criteria":
            for rule, outcome in expected.items():
                got = criteria.get(rule, "absent from criteria")
                if got != outcome:
                    out.append(Mismatch(f"criteria[{rule}]", outcome, got, [rule], loc(key, rule)))
    return out


def _error_facts(exc: KaqError) -> list[str]:
    errors = getattr(exc, "errors", None) or []
    return sorted({str(e["loc"][0]) for e in errors if e.get("loc")})


def run_case(case: Case, rs: RulesetLike, file: str = "") -> CaseResult:
    """Evaluate one case against its ruleset and compare the verdict with `want`."""
    result = CaseResult(case=case, ruleset=rs.name, file=file, status=PASSED)
    result.diagnostics = sorted(case.diagnostics + check_case(case, rs))
    if result.diagnostics:
        result.status = ERROR
        return result
    want = case.want
    try:
        verdict = rs.evaluate(case.facts)
    except KaqError as exc:
        code = getattr(exc, "code", "kaq.error")
        if "error" in want:
            if code != want["error"]:
                result.mismatches.append(
                    Mismatch(
                        "error", want["error"], f"{code}: {exc}", [], case.want_locs.get("error")
                    )
                )
            elif "error_facts" in want and sorted(set(want["error_facts"])) != _error_facts(exc):
                result.mismatches.append(
                    Mismatch(
                        "error_facts",
                        sorted(set(want["error_facts"])),
                        _error_facts(exc),
                        [],
                        case.want_locs.get("error_facts"),
                    )
                )
            result.status = FAILED if result.mismatches else PASSED
            return result
        if code == "facts.invalid":
            result.diagnostics = _invalid_facts(case, exc)
            result.status = ERROR
            return result
        result.mismatches.append(Mismatch("error", None, f"{code}: {exc}", [], case.loc))
        result.status = FAILED
        return result
    result.verdict = verdict
    if "error" in want:
        result.mismatches.append(
            Mismatch(
                "error",
                want["error"],
                f"a verdict ({verdict.get('qualification')})",
                [],
                case.want_locs.get("error"),
            )
        )
    else:
        result.mismatches = compare(want, verdict, case)
    result.status = FAILED if result.mismatches else PASSED
    return result


def _invalid_facts(case: Case, exc: KaqError) -> list[Diagnostic]:
    diags = []
    for err in getattr(exc, "errors", None) or [{"loc": [], "msg": str(exc)}]:
        path = [str(p) for p in err.get("loc") or []]
        loc = case.fact_locs.get(path[0], case.loc) if path else case.loc
        where = ".".join(path) or "facts"
        diags.append(
            loc.diagnostic(
                "case.invalid_facts",
                f"case `{case.note}`: {where}: {err.get('msg', 'invalid')}",
                "add `want: {error: facts.invalid}` if the case is meant to be rejected",
            )
        )
    return sorted(diags)


def run_case_file(case_file: CaseFile, rulesets: Mapping[str, RulesetLike]) -> FileResult:
    """Run every case of a file against the ruleset it names."""
    result = FileResult(case_file=case_file)
    if not case_file.diagnostics and case_file.ruleset not in rulesets:
        loc = case_file.ruleset_loc or Location(str(case_file.path), 1, 1)
        case_file.diagnostics.append(
            loc.diagnostic(
                "case.unknown_ruleset",
                f"no ruleset named `{case_file.ruleset}` is loaded",
                _hint(case_file.ruleset, rulesets),
            )
        )
    if case_file.diagnostics:
        return result
    rs = rulesets[case_file.ruleset]
    for case in case_file.cases:
        result.results.append(run_case(case, rs, str(case_file.path)))
    return result


def run_suite(case_files: Iterable[CaseFile], rulesets: Mapping[str, RulesetLike]) -> SuiteResult:
    """Run many test files."""
    return SuiteResult(files=[run_case_file(cf, rulesets) for cf in case_files])


# --------------------------------------------------------------------------- reporting


def show(value: Any) -> str:
    """A wanted or actual value as people read it in a diff."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def deciding_rules(result: CaseResult) -> list[Mapping[str, Any]]:
    """The trace entries of the rules that decided the mismatches, in ruleset order."""
    if result.verdict is None:
        return []
    wanted = {r for m in result.mismatches for r in m.rules}
    return [t for t in result.verdict.get("trace") or [] if t.get("rule") in wanted]


def decision_note(result: CaseResult) -> str | None:
    """`decision step 2 chose key_account`, when a wanted qualification or score differs."""
    keys = {m.key for m in result.mismatches}
    decision = (result.verdict or {}).get("decision")
    if not keys & {"qualification", "score"} or not isinstance(decision, Mapping):
        return None
    return f"decision step {decision.get('step')} chose {decision.get('qualification')}"


def comparisons_of(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A trace entry's comparisons, each distinct one once (a `when` and an escalation
    may test the same thing)."""
    seen: set[str] = set()
    out = []
    for c in entry.get("comparisons") or []:
        key = describe_comparison(c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def describe_comparison(c: Mapping[str, Any]) -> str:
    """`annual_spend >= big_spend: 3000000 >= 5000000 -> false (param big_spend)`."""
    text = (
        f"{c.get('expr')}: {show(c.get('left'))} {c.get('op')} {show(c.get('right'))}"
        f" -> {show(c.get('result'))}"
    )
    return f"{text} (param {c['param']})" if c.get("param") else text


def format_result(result: CaseResult) -> str:
    """A failing or erroring case as plain text (pytest messages, JUnit bodies)."""
    lines = [f"{result.status.upper()} {result.id} ({result.case.loc})"]
    lines += [f"  {d}" for d in result.diagnostics]
    for m in result.mismatches:
        where = f"  [{m.loc}]" if m.loc else ""
        lines.append(f"  {m.key}: expected {show(m.expected)}, got {show(m.actual)}{where}")
    note = decision_note(result)
    if note:
        lines.append(f"  {note}")
    trace = deciding_rules(result)
    if trace:
        lines.append("  decided by:")
    for t in trace:
        facts = ", ".join(f"{k}={show(v)}" for k, v in (t.get("facts") or {}).items())
        lines.append(f"    {t.get('rule')} {t.get('outcome')}: {facts or 'no facts'}")
        lines += [f"      {describe_comparison(c)}" for c in comparisons_of(t)]
    return "\n".join(lines)


__all__ = [
    "Case",
    "CaseFile",
    "CaseResult",
    "FileResult",
    "Location",
    "Mismatch",
    "RulesetLike",
    "SuiteResult",
    "check_case",
    "compare",
    "comparisons_of",
    "deciding_rules",
    "decision_note",
    "describe_comparison",
    "discover",
    "format_result",
    "load_case_file",
    "run_case",
    "run_case_file",
    "run_suite",
    "show",
]
