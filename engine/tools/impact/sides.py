"""The two sides of a diff: the ruleset sources of a folder or of a git revision."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.lang.source import load_yaml


class ImpactError(Exception):
    """The diff cannot be computed: an unknown revision, an unreadable corpus, a missing ruleset."""


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


def find_ruleset_doc(side: RulesetSide, name: str) -> Any:
    for file, text in side.sources.items():
        doc, problems = load_yaml(file, text)  # keeps quotes: the YAML diffs show the text
        if not problems and isinstance(doc, Mapping) and doc.get("name") == name:
            return doc
    return None


def doc_of(side: RulesetSide, rs: Any, name: str) -> Any:
    """The side's ruleset as its YAML tree: the one it was compiled from, else read again."""
    compiled = getattr(rs, "compiled", None)
    source = getattr(compiled, "source", None)
    if source is not None and getattr(source, "text", None) in side.sources.values():
        return source.doc
    return find_ruleset_doc(side, name)
