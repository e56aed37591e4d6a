"""Impact of a ruleset change on a corpus of accounts (`kaq diff`).

Three steps, each usable on its own:

1. read each side's ruleset sources, from a folder or from a git revision
   (`git ls-tree` / `git show`, never a checkout): `read_side`;
2. compare the two rulesets statically (rules added, removed, changed; params,
   derived facts and decision steps, and which rules read a changed param):
   `ruleset_changes`;
3. compare the verdicts of every account under both sides (each corpus is
   evaluated once per side): `compare_verdicts`; `analyze` does 1-3 end to end.

The report is plain JSON-ready data; `render_text` and `render_markdown` turn it
into a terminal report and a pull-request comment.

Example::

    report = analyze(read_side("origin/main"), read_side("rulesets"),
                     load_corpus(Path("corpus/accounts-2000.jsonl")))
    print(render_markdown(report))
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from engine.lang.source import load_yaml, plain

__all__ = [
    "ImpactError",
    "RulesetSide",
    "analyze",
    "compare_verdicts",
    "load_corpus",
    "read_side",
    "render_json",
    "render_markdown",
    "render_text",
    "ruleset_changes",
]

QUALIFICATION_ORDER = (
    "key_account",
    "potential_key_account",
    "not_key_account",
    "insufficient_data",
)
_INVALID = "invalid"  # pseudo-qualification of an account a side rejects


class ImpactError(Exception):
    """The diff cannot be computed: an unknown revision, an unreadable corpus, a missing ruleset."""


# --------------------------------------------------------------------------- sides


@dataclass
class RulesetSide:
    """One side of the diff: the ruleset sources of a folder or of a git revision."""

    label: str
    sources: dict[str, str]  # file name -> YAML text (test-case files left out)
    revision: str | None = None  # the commit, for a git side


def _is_ruleset_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and not name.endswith((".tests.yaml", ".tests.yml"))


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError as e:
        raise ImpactError("git is not installed") from e
    if done.returncode != 0:
        raise ImpactError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def read_side(spec: str, *, repo: Path = Path("."), rulesets_path: str = "rulesets") -> RulesetSide:
    """Read a ruleset folder, or, when `spec` is not a folder, the git revision `spec` of `repo`."""
    folder = Path(spec)
    if folder.is_dir():
        sources = {
            p.name: p.read_text(encoding="utf-8")
            for p in sorted(folder.iterdir())
            if p.is_file() and _is_ruleset_file(p.name)
        }
        if not sources:
            raise ImpactError(f"{spec}: no ruleset files (*.yaml) in this folder")
        return RulesetSide(label=spec, sources=sources)
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}").strip()
    except ImpactError as e:
        raise ImpactError(f"{spec}: neither a folder nor a git revision of {repo}") from e
    prefix = rulesets_path.strip("/")
    listing = _git(repo, "ls-tree", "--name-only", commit, f"{prefix}/")
    sources = {}
    for path in listing.splitlines():
        name = path.rsplit("/", 1)[-1]
        if _is_ruleset_file(name):
            sources[name] = _git(repo, "show", f"{commit}:{path}")
    if not sources:
        raise ImpactError(f"{spec}: no ruleset files under {prefix}/ at {commit[:12]}")
    return RulesetSide(label=spec, sources=sources, revision=commit)


def load_corpus(path: Path) -> list[dict[str, Any]]:
    """Accounts from a JSON Lines file (one facts object a line) or a JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ImpactError(f"{path}: {e.strerror or e}") from e
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ImpactError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from e
        if isinstance(data, dict) and isinstance(data.get("accounts"), list):
            data = data["accounts"]
        if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
            raise ImpactError(f"{path}: expected a list of facts objects")
        return data
    accounts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ImpactError(f"{path}:{lineno}:{e.colno}: {e.msg}") from e
        if not isinstance(item, dict):
            raise ImpactError(f"{path}:{lineno}:1: expected a facts object")
        accounts.append(item)
    return accounts


# --------------------------------------------------------------------------- static diff


def _find_ruleset_doc(side: RulesetSide, name: str) -> Any:
    for file, text in side.sources.items():
        doc, problems = load_yaml(file, text)  # keeps quotes: the YAML diffs show the text
        if not problems and isinstance(doc, Mapping) and doc.get("name") == name:
            return doc
    return None


def _doc_of(side: RulesetSide, rs: Any, name: str) -> Any:
    """The side's ruleset as its YAML tree: the one it was compiled from, else read again."""
    compiled = getattr(rs, "compiled", None)
    source = getattr(compiled, "source", None)
    if source is not None and getattr(source, "text", None) in side.sources.values():
        return source.doc
    return _find_ruleset_doc(side, name)


def _dump(node: Any) -> str:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(node, out)
    return out.getvalue()


def _udiff(base: Any, head: Any, label: str) -> str:
    a = _dump(base).splitlines(keepends=True) if base is not None else []
    b = _dump(head).splitlines(keepends=True) if head is not None else []
    return "".join(
        difflib.unified_diff(a, b, fromfile=f"base/{label}", tofile=f"head/{label}", n=2)
    )


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _names(expr: Any) -> set[str]:
    """The names an expression reads (a bare param name counts, e.g. a criterion's weight)."""
    if not isinstance(expr, str):
        return set()
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return set(_IDENT.findall(expr))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _rule_reads(rule: Mapping[str, Any]) -> set[str]:
    names = set()
    for key in ("applies_when", "when", "partly_when", "weight"):
        names |= _names(rule.get(key))
    for step in rule.get("escalate") or []:
        if isinstance(step, Mapping):
            names |= _names(step.get("when"))
    return names


def _mapping(doc: Any, *path: str) -> Mapping[str, Any]:
    node = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _rules(doc: Any) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for section in ((), ("portfolio",)):
        node = _mapping(doc, *section).get("rules") if section else _mapping(doc).get("rules")
        for rule in node or []:
            if isinstance(rule, Mapping) and isinstance(rule.get("id"), str):
                rules[rule["id"]] = rule
    return rules


def _decl_changes(base: Mapping[str, Any], head: Mapping[str, Any], what: str) -> list[dict]:
    out = []
    for name in [*base, *(k for k in head if k not in base)]:
        b, h = base.get(name), head.get(name)
        if plain(b) == plain(h):
            continue
        entry: dict[str, Any] = {"name": str(name)}
        entry["change"] = "added" if b is None else "removed" if h is None else "changed"
        if isinstance(b, Mapping) or isinstance(h, Mapping):
            bv = plain(b.get("value")) if isinstance(b, Mapping) else None
            hv = plain(h.get("value")) if isinstance(h, Mapping) else None
            if what == "param":
                entry["base"], entry["head"] = bv, hv
        section = {"param": "params", "derived": "derived", "fact": "facts"}[what]
        entry["diff"] = _udiff(
            {name: b} if b is not None else None,
            {name: h} if h is not None else None,
            f"{section}.{name}",
        )
        out.append(entry)
    return out


def ruleset_changes(base_doc: Any, head_doc: Any) -> dict[str, Any]:
    """Rules added, removed and changed, and the params / derived facts / decision that changed.

    A rule counts as changed when its own YAML differs (comments aside) or when it
    reads a param or derived fact that changed (rules name params, so editing a
    threshold changes every rule that reads it).
    """
    base_rules, head_rules = _rules(base_doc), _rules(head_doc)
    params = _decl_changes(
        _mapping(base_doc, "params"), _mapping(head_doc, "params"), "param"
    ) + _decl_changes(
        _mapping(base_doc, "portfolio", "params"),
        _mapping(head_doc, "portfolio", "params"),
        "param",
    )
    derived = _decl_changes(_mapping(base_doc, "derived"), _mapping(head_doc, "derived"), "derived")
    facts = _decl_changes(_mapping(base_doc, "facts"), _mapping(head_doc, "facts"), "fact")
    changed_names = {p["name"] for p in params} | {d["name"] for d in derived}
    # A derived fact that reads a changed name changes too (transitively).
    head_derived = _mapping(head_doc, "derived")
    grew = True
    while grew:
        grew = False
        for name, decl in head_derived.items():
            if name not in changed_names and isinstance(decl, Mapping):
                if _names(decl.get("expr")) & changed_names:
                    changed_names.add(str(name))
                    grew = True

    changed = []
    for rid, rule in head_rules.items():
        base_rule = base_rules.get(rid)
        if base_rule is None:
            continue
        edited = plain(base_rule) != plain(rule)
        reads = sorted(_rule_reads(rule) & changed_names)
        if edited or reads:
            changed.append(
                {
                    "id": rid,
                    "edited": edited,
                    "reads_changed": reads,
                    "diff": _udiff([base_rule], [rule], rid) if edited else "",
                }
            )

    base_steps = _mapping(base_doc, "decision").get("steps") or []
    head_steps = _mapping(head_doc, "decision").get("steps") or []
    decision_reads: set[str] = set()
    for step in head_steps:
        if isinstance(step, Mapping):
            decision_reads |= _names(step.get("when"))
    edited = plain(base_steps) != plain(head_steps)
    decision = {
        "edited": edited,
        "reads_changed": sorted(decision_reads & changed_names),
        "diff": _udiff(base_steps, head_steps, "decision.steps") if edited else "",
    }
    return {
        "rules_added": [rid for rid in head_rules if rid not in base_rules],
        "rules_removed": [rid for rid in base_rules if rid not in head_rules],
        "rules_changed": changed,
        "params_changed": params,
        "derived_changed": derived,
        "facts_changed": facts,
        "decision": decision,
        "param_values": {
            "base": {str(k): plain(v.get("value")) for k, v in _param_decls(base_doc).items()},
            "head": {str(k): plain(v.get("value")) for k, v in _param_decls(head_doc).items()},
        },
    }


def _param_decls(doc: Any) -> dict[str, Mapping[str, Any]]:
    out = {}
    for section in (("params",), ("portfolio", "params")):
        for k, v in _mapping(doc, *section).items():
            if isinstance(v, Mapping):
                out[k] = v
    return out


# --------------------------------------------------------------------------- verdict diff


@dataclass
class _Summary:
    qualification: str
    score: float | None = None
    segments: tuple[str, ...] = ()
    stage: str | None = None
    guardrails: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"qualification": _INVALID, "error": self.error}
        return {
            "qualification": self.qualification,
            "score": self.score,
            "segments": list(self.segments),
            "stage": self.stage,
            "guardrails": dict(self.guardrails),
        }


def _summarize(verdict: Any) -> _Summary:
    if not isinstance(verdict, Mapping):
        return _Summary(qualification=_INVALID, error=str(verdict) or type(verdict).__name__)
    return _Summary(
        qualification=str(verdict.get("qualification")),
        score=verdict.get("score"),
        segments=tuple(sorted(verdict.get("segments") or ())),
        stage=verdict.get("stage"),
        guardrails={g["rule"]: g.get("severity") for g in verdict.get("guardrails") or ()},
    )


def _trace(verdict: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(verdict, Mapping):
        return {}
    return {t["rule"]: t for t in verdict.get("trace") or () if isinstance(t, Mapping)}


@dataclass(frozen=True)
class _ParamReads:
    """The changed params, and which of them each rule and the decision steps read."""

    values: Mapping[str, tuple[Any, Any]]
    by_rule: Mapping[str, Sequence[str]] | None = None  # None: unknown, show all on a move
    by_decision: Sequence[str] | None = None

    def of_rule(self, rid: str) -> list[str]:
        return [n for n in (self.by_rule or {}).get(rid, ()) if n in self.values]

    def of_decision(self) -> list[str]:
        names = self.values if self.by_decision is None else self.by_decision
        return [n for n in names if n in self.values]


def _moving_facts(
    base: Any, head: Any, params: _ParamReads
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rules whose outcome changed, and the facts and changed params they read.

    A value that differs between the sides is shown as `{"base": ..., "head": ...}`.
    """
    bt, ht = _trace(base), _trace(head)
    rules = []
    facts: dict[str, Any] = {}
    for rid in [*bt, *(r for r in ht if r not in bt)]:
        b, h = bt.get(rid, {}), ht.get(rid, {})
        b_out = (b.get("outcome"), b.get("points"), b.get("severity"))
        h_out = (h.get("outcome"), h.get("points"), h.get("severity"))
        if b_out == h_out:
            continue
        rules.append({"rule": rid, "base": _outcome_label(b), "head": _outcome_label(h)})
        bf, hf = b.get("facts") or {}, h.get("facts") or {}
        for name in [*bf, *(n for n in hf if n not in bf)]:
            if name in facts:
                continue
            bv, hv = bf.get(name), hf.get(name)
            facts[name] = hv if bv == hv or name not in bf else {"base": bv, "head": hv}
        for name in params.of_rule(rid):
            bv, hv = params.values[name]
            facts.setdefault(name, {"base": bv, "head": hv})
    if isinstance(base, Mapping) and isinstance(head, Mapping):
        if base.get("qualification") != head.get("qualification"):
            # The decision steps compare the score with params: show what they read.
            bs, hs = base.get("score"), head.get("score")
            facts.setdefault("score", hs if bs == hs else {"base": bs, "head": hs})
            for name in params.of_decision():
                bv, hv = params.values[name]
                facts.setdefault(name, {"base": bv, "head": hv})
    return rules, facts


def _outcome_label(t: Mapping[str, Any]) -> str:
    if not t:
        return "absent"
    label = str(t.get("outcome"))
    if t.get("severity"):
        label += f" ({t['severity']})"
    elif t.get("points") is not None and t.get("outcome") == "fired":
        label += f" ({_num(t['points'])} pts)"
    return label


def _num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def compare_verdicts(
    accounts: Sequence[Mapping[str, Any]],
    base: Sequence[Any],
    head: Sequence[Any],
    *,
    top: int = 10,
    changed_params: Mapping[str, tuple[Any, Any]] | None = None,
    rule_params: Mapping[str, Sequence[str]] | None = None,
    decision_params: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compare the verdicts (or per-account errors) of both sides, account by account.

    `changed_params` maps a param to its (base, head) values; `rule_params` and
    `decision_params` say which of them each rule and the decision steps read, so
    that the top accounts show the params that moved them.
    """
    if not len(accounts) == len(base) == len(head):
        raise ValueError("accounts, base and head verdicts differ in length")
    params = _ParamReads(changed_params or {}, rule_params, decision_params)
    transitions: dict[str, Counter[str]] = {}
    guard_new: Counter[str] = Counter()
    guard_cleared: Counter[str] = Counter()
    guard_severity: Counter[str] = Counter()
    seg_added: Counter[str] = Counter()
    seg_removed: Counter[str] = Counter()
    stage_moves: Counter[tuple[Any, Any]] = Counter()
    deltas: list[float] = []
    changed_idx: list[tuple[tuple[Any, ...], int, _Summary, _Summary]] = []
    invalid = {"base": 0, "head": 0}

    for i, (b_raw, h_raw) in enumerate(zip(base, head, strict=True)):
        b, h = _summarize(b_raw), _summarize(h_raw)
        invalid["base"] += b.error is not None
        invalid["head"] += h.error is not None
        transitions.setdefault(b.qualification, Counter())[h.qualification] += 1
        if b == h:
            continue
        for rule in h.guardrails.keys() - b.guardrails.keys():
            guard_new[rule] += 1
        for rule in b.guardrails.keys() - h.guardrails.keys():
            guard_cleared[rule] += 1
        for rule in b.guardrails.keys() & h.guardrails.keys():
            if b.guardrails[rule] != h.guardrails[rule]:
                guard_severity[rule] += 1
        for seg in set(h.segments) - set(b.segments):
            seg_added[seg] += 1
        for seg in set(b.segments) - set(h.segments):
            seg_removed[seg] += 1
        if b.stage != h.stage and b.error is None and h.error is None:
            stage_moves[(b.stage, h.stage)] += 1
        delta = 0.0
        if isinstance(b.score, int | float) and isinstance(h.score, int | float):
            delta = float(h.score) - float(b.score)
            if delta:
                deltas.append(delta)
        moved = b.qualification != h.qualification
        guard_changes = len(b.guardrails.keys() ^ h.guardrails.keys())
        changed_idx.append(((not moved, -abs(delta), -guard_changes, i), i, b, h))

    changed_idx.sort(key=lambda item: item[0])
    top_accounts = []
    for _, i, b, h in changed_idx[: max(top, 0)]:
        rules, facts = _moving_facts(base[i], head[i], params)
        account = accounts[i]
        top_accounts.append(
            {
                "index": i,
                "account_id": account.get("account_id"),
                "name": account.get("name"),
                "base": b.as_dict(),
                "head": h.as_dict(),
                "score_delta": (
                    float(h.score) - float(b.score)
                    if isinstance(b.score, int | float) and isinstance(h.score, int | float)
                    else None
                ),
                "rules": rules,
                "facts": facts,
            }
        )

    quals = _ordered({q for q in transitions} | {q for c in transitions.values() for q in c})
    guard_rules = sorted(guard_new.keys() | guard_cleared.keys() | guard_severity.keys())
    moved_count = sum(n for bq, row in transitions.items() for hq, n in row.items() if bq != hq)
    return {
        "accounts": len(accounts),
        "changed": len(changed_idx),
        "qualification_moved": moved_count,
        "invalid": invalid,
        "qualifications": quals,
        "transitions": {
            bq: {hq: transitions.get(bq, Counter())[hq] for hq in quals} for bq in quals
        },
        "guardrails": [
            {
                "rule": rule,
                "newly_fired": guard_new[rule],
                "cleared": guard_cleared[rule],
                "severity_changed": guard_severity[rule],
            }
            for rule in guard_rules
        ],
        "segments": [
            {"segment": s, "added": seg_added[s], "removed": seg_removed[s]}
            for s in sorted(seg_added.keys() | seg_removed.keys())
        ],
        "stages": [
            {"base": b, "head": h, "count": n}
            for (b, h), n in sorted(stage_moves.items(), key=lambda x: (-x[1], str(x[0])))
        ],
        "scores": {
            "changed": len(deltas),
            "mean_delta": (sum(deltas) / len(deltas)) if deltas else 0.0,
            "min_delta": min(deltas) if deltas else 0.0,
            "max_delta": max(deltas) if deltas else 0.0,
            "raised": sum(d > 0 for d in deltas),
            "lowered": sum(d < 0 for d in deltas),
        },
        "top": top_accounts,
        # Every changed account, in corpus order, for tools that read the JSON report.
        "changed_accounts": [
            {
                "account_id": accounts[i].get("account_id"),
                "base": b.qualification,
                "head": h.qualification,
            }
            for _, i, b, h in sorted(changed_idx, key=lambda item: item[1])
        ],
    }


def _ordered(quals: Iterable[str]) -> list[str]:
    rank = {q: i for i, q in enumerate((*QUALIFICATION_ORDER, _INVALID))}
    return sorted(quals, key=lambda q: (rank.get(q, len(rank)), q))


# --------------------------------------------------------------------------- end to end


def _compact(verdict: Any) -> Any:
    """The parts of a verdict the diff reads (messages dropped); an error becomes its text."""
    if not isinstance(verdict, Mapping):
        return str(verdict) or type(verdict).__name__
    return {
        "qualification": verdict.get("qualification"),
        "score": verdict.get("score"),
        "segments": verdict.get("segments"),
        "stage": verdict.get("stage"),
        "guardrails": [
            {"rule": g.get("rule"), "severity": g.get("severity")}
            for g in verdict.get("guardrails") or ()
        ],
        "trace": [
            {
                "rule": t.get("rule"),
                "outcome": t.get("outcome"),
                "points": t.get("points"),
                "severity": t.get("severity"),
                "facts": t.get("facts"),
            }
            for t in verdict.get("trace") or ()
        ],
    }


def _evaluate_all(rs: Any, accounts: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Each account's compact verdict, or the text of the engine error it raised."""
    from engine.errors import KaqError

    out: list[Any] = []
    for account in accounts:
        try:
            out.append(_compact(rs.evaluate(account, texts=False)))
        except KaqError as e:
            out.append(_compact(e))
    return out


# Worker processes load both sides once (in the initializer) and then evaluate chunks.
_WORKER_SETS: dict[str, Any] = {}


def _worker_init(sides: dict[str, dict[str, str]], name: str) -> None:
    from engine import load_rulesets_from_sources

    for key, sources in sides.items():
        _WORKER_SETS[key] = load_rulesets_from_sources(sources)[name]


def _worker_evaluate(key: str, chunk: list[Mapping[str, Any]]) -> list[Any]:
    return _evaluate_all(_WORKER_SETS[key], chunk)


def _evaluate_parallel(
    sides: dict[str, RulesetSide], name: str, accounts: Sequence[Mapping[str, Any]], jobs: int
) -> dict[str, list[Any]]:
    """Evaluate every side in `jobs` spawned processes (spawn: durable_rules keeps C state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = max(50, -(-len(accounts) // (jobs * 4)))
    chunks = [list(accounts[i : i + size]) for i in range(0, len(accounts), size)]
    sources = {key: side.sources for key, side in sides.items()}
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(sources, name),
    ) as pool:
        futures = {key: [pool.submit(_worker_evaluate, key, c) for c in chunks] for key in sides}
        return {key: [v for f in fs for v in f.result()] for key, fs in futures.items()}


def default_jobs() -> int:
    """Worker processes for a large corpus: the CPUs this process may use, at most 8.

    On one or two CPUs a single process wins: spawning workers and loading the
    rulesets in each costs more than the second CPU gives back.
    """
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 8) if cpus >= 4 else 1


def _load(side: RulesetSide, name: str) -> Any:
    from engine import load_rulesets_from_sources

    sets = load_rulesets_from_sources(side.sources)
    if name not in sets:
        known = ", ".join(sorted(sets)) or "none"
        raise ImpactError(f"{side.label}: no ruleset named {name!r} (found: {known})")
    return sets[name]


def analyze(
    base: RulesetSide,
    head: RulesetSide,
    accounts: Sequence[Mapping[str, Any]],
    *,
    ruleset: str = "key-account",
    top: int = 10,
    jobs: int = 1,
    parallel_min: int = 2000,
    known: MutableMapping[str, list[Any]] | None = None,
    prepared: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load both sides, evaluate every account once per side, and report the impact.

    With `jobs` > 1 and at least `parallel_min` accounts, the evaluation runs in
    that many worker processes. When both sides hold the same ruleset source, the
    accounts are evaluated once. Raises `ImpactError`, or the engine's
    `RulesetError` when a side does not load.

    `known` (ruleset digest -> compact verdicts of these very `accounts`) is read for a
    side already evaluated and filled with what is evaluated here: the studio evaluates
    the served ruleset on its corpus once, not at every keystroke.

    `prepared` ({"base": ruleset, "head": ruleset}, either or both) gives a side already
    prepared from that side's sources (the caller keeps and closes it): not compiled again.
    """
    started = time.perf_counter()
    given = dict(prepared or {})
    base_rs = given.get("base") or _load(base, ruleset)
    head_rs = given.get("head") or _load(head, ruleset)
    loaded = time.perf_counter()
    same = base_rs.digest == head_rs.digest
    sides = {"base": base} if same else {"base": base, "head": head}
    try:
        if jobs > 1 and len(accounts) >= parallel_min:
            results = _evaluate_parallel(sides, ruleset, accounts, jobs)
        else:
            loaded_sets = {"base": base_rs, "head": head_rs}
            results = {}
            for key in sides:
                digest = loaded_sets[key].digest
                if known is not None and digest in known:
                    results[key] = known[digest]
                    continue
                results[key] = _evaluate_all(loaded_sets[key], accounts)
                if known is not None:
                    known[digest] = results[key]
    finally:
        for key, rs in (("base", base_rs), ("head", head_rs)):
            close = getattr(rs, "close", None)
            if close is not None and key not in given:
                close()
    base_verdicts = results["base"]
    head_verdicts = results.get("head", base_verdicts)
    evaluated = time.perf_counter()

    changes = ruleset_changes(
        _doc_of(base, base_rs, ruleset) or {}, _doc_of(head, head_rs, ruleset) or {}
    )
    changed_params = {p["name"]: (p.get("base"), p.get("head")) for p in changes["params_changed"]}
    verdicts = compare_verdicts(
        accounts,
        base_verdicts,
        head_verdicts,
        top=top,
        changed_params=changed_params,
        rule_params={r["id"]: r["reads_changed"] for r in changes["rules_changed"]},
        decision_params=changes["decision"]["reads_changed"],
    )
    finished = time.perf_counter()
    return {
        "ruleset": ruleset,
        "base": _side_info(base, base_rs),
        "head": _side_info(head, head_rs),
        "changes": changes,
        **verdicts,
        "elapsed_seconds": {
            "load": round(loaded - started, 3),
            "evaluate": round(evaluated - loaded, 3),
            "total": round(finished - started, 3),
        },
        "evaluations": len(sides) * len(accounts),
        "jobs": jobs if jobs > 1 and len(accounts) >= parallel_min else 1,
        "evaluations_per_second": round(
            len(sides) * len(accounts) / max(evaluated - loaded, 1e-9), 1
        ),
    }


def _side_info(side: RulesetSide, rs: Any) -> dict[str, Any]:
    return {
        "label": side.label,
        "revision": side.revision,
        "version": getattr(rs, "version", None),
        "digest": getattr(rs, "digest", None),
    }


def exceeds(report: Mapping[str, Any], *, fail_on_change: bool, max_moved: int | None) -> bool:
    """Whether the CI gate fails: any verdict changed (with `fail_on_change`), or too many moved."""
    if fail_on_change and report["changed"] > 0:
        return True
    return max_moved is not None and report["qualification_moved"] > max_moved


# --------------------------------------------------------------------------- rendering


def render_json(report: Mapping[str, Any]) -> str:
    """The report as JSON (stable key order, UTF-8 text)."""
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_delta(x: float) -> str:
    return f"{x:+.2f}".rstrip("0").rstrip(".") if x else "0"


def _value(v: Any) -> str:
    if isinstance(v, Mapping) and set(v) == {"base", "head"}:
        return f"{_value(v['base'])} → {_value(v['head'])}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, float):
        return _num(v)
    return str(v)


def _param_line(p: Mapping[str, Any]) -> str:
    if p["change"] == "changed":
        return f"{p['name']} {_value(p.get('base'))} → {_value(p.get('head'))}"
    return f"{p['name']} ({p['change']})"


def _headline(report: Mapping[str, Any]) -> str:
    n, changed, moved = report["accounts"], report["changed"], report["qualification_moved"]
    if not changed:
        return f"no verdict changes across {_fmt_int(n)} accounts"
    pct = 100.0 * moved / n if n else 0.0
    return (
        f"{_fmt_int(changed)} of {_fmt_int(n)} accounts change verdict; "
        f"{_fmt_int(moved)} ({pct:.1f}%) change qualification"
    )


def _change_summary(ch: Mapping[str, Any]) -> list[str]:
    lines = []
    if ch["params_changed"]:
        lines.append("params changed: " + "; ".join(_param_line(p) for p in ch["params_changed"]))
    if ch["derived_changed"]:
        lines.append(
            "derived facts changed: " + ", ".join(d["name"] for d in ch["derived_changed"])
        )
    if ch["facts_changed"]:
        lines.append(
            "fact declarations changed: "
            + ", ".join(f"{f['name']} ({f['change']})" for f in ch["facts_changed"])
        )
    if ch["rules_added"]:
        lines.append("rules added: " + ", ".join(ch["rules_added"]))
    if ch["rules_removed"]:
        lines.append("rules removed: " + ", ".join(ch["rules_removed"]))
    for r in ch["rules_changed"]:
        why = ["edited"] if r["edited"] else []
        if r["reads_changed"]:
            why.append("reads " + ", ".join(r["reads_changed"]))
        lines.append(f"rule changed: {r['id']} ({'; '.join(why)})")
    dec = ch["decision"]
    if dec["edited"] or dec["reads_changed"]:
        why = ["edited"] if dec["edited"] else []
        if dec["reads_changed"]:
            why.append("reads " + ", ".join(dec["reads_changed"]))
        lines.append(f"decision steps changed ({'; '.join(why)})")
    if not lines:
        lines.append("no rule, param or decision changes")
    return lines


def _diffs(ch: Mapping[str, Any]) -> list[str]:
    out = [p["diff"] for p in ch["params_changed"] if p.get("diff")]
    out += [d["diff"] for d in ch["derived_changed"] if d.get("diff")]
    out += [f["diff"] for f in ch["facts_changed"] if f.get("diff")]
    out += [r["diff"] for r in ch["rules_changed"] if r.get("diff")]
    if ch["decision"].get("diff"):
        out.append(ch["decision"]["diff"])
    return out


def _account_label(a: Mapping[str, Any]) -> str:
    label = str(a.get("account_id"))
    if a.get("name"):
        label += f" {a['name']}"
    return label


def _account_change(a: Mapping[str, Any]) -> str:
    b, h = a["base"], a["head"]
    parts = []
    if b["qualification"] != h["qualification"]:
        parts.append(f"{b['qualification']} → {h['qualification']}")
    if a.get("score_delta"):
        parts.append(f"score {_num(b['score'])} → {_num(h['score'])}")
    bg, hg = b.get("guardrails") or {}, h.get("guardrails") or {}
    for rule in sorted(hg.keys() - bg.keys()):
        parts.append(f"+{rule} ({hg[rule]})")
    for rule in sorted(bg.keys() - hg.keys()):
        parts.append(f"-{rule}")
    for rule in sorted(bg.keys() & hg.keys()):
        if bg[rule] != hg[rule]:
            parts.append(f"{rule} {bg[rule]} → {hg[rule]}")
    if b.get("stage") != h.get("stage"):
        parts.append(f"stage {b.get('stage')} → {h.get('stage')}")
    bs, hs = set(b.get("segments") or ()), set(h.get("segments") or ())
    parts += [f"+segment {s}" for s in sorted(hs - bs)]
    parts += [f"-segment {s}" for s in sorted(bs - hs)]
    if b.get("error") or h.get("error"):
        parts.append(f"error: {b.get('error') or h.get('error')}")
    return "; ".join(parts)


def _facts_line(facts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in facts.items())


def _elapsed(report: Mapping[str, Any]) -> str:
    e = report["elapsed_seconds"]
    return (
        f"{e['total']:.2f} s (load {e['load']:.2f} s, evaluate {e['evaluate']:.2f} s, "
        f"{report['evaluations_per_second']:,.0f} evaluations/s"
        + (f" in {report['jobs']} processes)" if report.get("jobs", 1) > 1 else ")")
    )


def _side_text(side: Mapping[str, Any]) -> str:
    text = str(side["label"])
    if side.get("revision"):
        text += f" @ {side['revision'][:12]}"
    if side.get("version"):
        text += f" (version {side['version']})"
    return text


def _matrix_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    quals = report["qualifications"]
    header = ["base \\ head", *quals, "total"]
    rows = []
    for bq in quals:
        row = report["transitions"][bq]
        rows.append([bq, *(_fmt_int(row[hq]) for hq in quals), _fmt_int(sum(row.values()))])
    totals = [sum(report["transitions"][bq][hq] for bq in quals) for hq in quals]
    rows.append(["total", *(_fmt_int(t) for t in totals), _fmt_int(sum(totals))])
    return header, rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_text(report: Mapping[str, Any]) -> str:
    """A plain-text report for the terminal."""
    out = [
        f"kaq diff {report['ruleset']}: {_headline(report)}",
        f"base: {_side_text(report['base'])}",
        f"head: {_side_text(report['head'])}",
        "",
        *(f"  {line}" for line in _change_summary(report["changes"])),
        "",
        "Qualification transitions (rows: base, columns: head):",
        *_table(*_matrix_rows(report)),
    ]
    if report["guardrails"]:
        out += ["", "Guardrails:"]
        out += _table(
            ["rule", "newly firing", "cleared", "severity changed"],
            [
                [g["rule"], _fmt_int(g["newly_fired"]), _fmt_int(g["cleared"]),
                 _fmt_int(g["severity_changed"])]
                for g in report["guardrails"]
            ],
        )  # fmt: skip
    if report["segments"]:
        out += ["", "Segments:"]
        out += _table(
            ["segment", "added", "removed"],
            [
                [s["segment"], _fmt_int(s["added"]), _fmt_int(s["removed"])]
                for s in report["segments"]
            ],
        )
    if report["stages"]:
        out += ["", "Stage moves:"]
        out += [f"  {s['base']} → {s['head']}: {_fmt_int(s['count'])}" for s in report["stages"]]
    sc = report["scores"]
    out += ["", f"Score shifts: {_fmt_int(sc['changed'])} accounts"]
    if sc["changed"]:
        out[-1] += (
            f" (mean {_fmt_delta(sc['mean_delta'])}, min {_fmt_delta(sc['min_delta'])}, "
            f"max {_fmt_delta(sc['max_delta'])})"
        )
    if report["invalid"]["base"] or report["invalid"]["head"]:
        out.append(
            f"Invalid accounts: base {report['invalid']['base']}, head {report['invalid']['head']}"
        )
    if report["top"]:
        out += ["", f"Top {len(report['top'])} changed accounts:"]
        for a in report["top"]:
            out.append(f"  {_account_label(a)}: {_account_change(a)}")
            for r in a["rules"]:
                out.append(f"      {r['rule']}: {r['base']} → {r['head']}")
            if a["facts"]:
                out.append(f"      facts: {_facts_line(a['facts'])}")
    diffs = _diffs(report["changes"])
    if diffs:
        out += ["", "YAML changes:", *("".join(diffs).rstrip("\n").splitlines())]
    out += ["", f"elapsed: {_elapsed(report)}"]
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], align: str = "r") -> list[str]:
    sep = ["---"] + [("---:" if align == "r" else "---") for _ in header[1:]]
    return [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows),
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """A pull-request comment: headline first, then tables, details collapsed."""
    moved, changed = report["qualification_moved"], report["changed"]
    icon = "✅" if not changed else "⚠️" if moved else "ℹ️"
    out = [
        f"### {icon} kaq diff `{report['ruleset']}`: {_headline(report)}",
        "",
        f"Base **{_md_escape(_side_text(report['base']))}** → head "
        f"**{_md_escape(_side_text(report['head']))}**, "
        f"{_fmt_int(report['accounts'])} accounts, {_md_escape(_elapsed(report))}.",
        "",
        *(f"- {_md_escape(line)}" for line in _change_summary(report["changes"])),
        "",
    ]
    if changed:
        header, rows = _matrix_rows(report)
        quals = report["qualifications"]
        for r, bq in zip(rows, quals, strict=False):
            for j, hq in enumerate(quals, 1):
                if bq != hq and report["transitions"][bq][hq]:
                    r[j] = f"**{r[j]}**"
        out += [
            "**Qualification transitions** (rows: base, columns: head; moved counts in bold)",
            "",
            *_md_table([f"`{h}`" if h in quals else h for h in header],
                       [[f"`{r[0]}`" if r[0] in quals else r[0], *r[1:]] for r in rows]),
            "",
        ]  # fmt: skip
        if report["guardrails"]:
            out += [
                "**Guardrails**",
                "",
                *_md_table(
                    ["rule", "newly firing", "cleared", "severity changed"],
                    [
                        [f"`{g['rule']}`", _fmt_int(g["newly_fired"]), _fmt_int(g["cleared"]),
                         _fmt_int(g["severity_changed"])]
                        for g in report["guardrails"]
                    ],
                ),
                "",
            ]  # fmt: skip
        else:
            out += ["**Guardrails:** no finding newly fires or clears.", ""]
        sc = report["scores"]
        if sc["changed"]:
            score_row = [
                _fmt_int(sc["changed"]),
                _fmt_delta(sc["mean_delta"]),
                _fmt_delta(sc["min_delta"]),
                _fmt_delta(sc["max_delta"]),
            ]
            out += [
                "**Score shifts** (over the accounts whose score changed)",
                "",
                *_md_table(["accounts", "mean Δ", "min Δ", "max Δ"], [score_row]),
                "",
            ]
        else:
            out += ["**Scores:** unchanged for every account.", ""]
        extra = []
        if report["segments"]:
            extra += _md_table(
                ["segment", "added", "removed"],
                [[f"`{s['segment']}`", _fmt_int(s["added"]), _fmt_int(s["removed"])]
                 for s in report["segments"]],
            ) + [""]  # fmt: skip
        if report["stages"]:
            extra += _md_table(
                ["stage (base)", "stage (head)", "accounts"],
                [[str(s["base"]), str(s["head"]), _fmt_int(s["count"])] for s in report["stages"]],
            ) + [""]
        if report["invalid"]["base"] or report["invalid"]["head"]:
            extra += [
                f"Accounts rejected by the facts model: base {report['invalid']['base']}, "
                f"head {report['invalid']['head']}.",
                "",
            ]
        if extra:
            out += ["<details><summary>Segments and stages</summary>", "", *extra, "</details>", ""]
    if report["top"]:
        rows = []
        for a in report["top"]:
            moved_by = "<br>".join(f"`{r['rule']}`: {r['base']} → {r['head']}" for r in a["rules"])
            rows.append(
                [
                    f"`{a['account_id']}` {a.get('name') or ''}".strip(),
                    _account_change(a),
                    moved_by or "—",
                    _facts_line(a["facts"]) or "—",
                ]
            )
        out += [
            f"<details><summary>Top {len(report['top'])} changed accounts</summary>",
            "",
            *_md_table(["account", "change", "rules whose outcome changed", "facts"], rows, "l"),
            "",
            "</details>",
            "",
        ]
    diffs = _diffs(report["changes"])
    if diffs:
        out += [
            "<details><summary>Rule and param changes (YAML)</summary>",
            "",
            "```diff",
            *("".join(diffs).rstrip("\n").splitlines()),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)
