"""The house rules of the layout, checked on the source (docs/architecture.md draws them).

- engine/ knows nothing of HTTP or of the command line;
- durable_rules is imported by exactly one module, the engine seam;
- nothing outside the engine reaches a prepared ruleset's private parts;
- one of each: the 1e15 limit, the "did you mean" helper, the severity order and the YAML
  reader each live in one place, and the others use it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "api", "cli")


def _sources(*folders: str) -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted((ROOT / folder).rglob("*.py")):
            out[p.relative_to(ROOT).as_posix()] = p.read_text(encoding="utf-8")
    return out


def _imports(text: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_engine_imports_neither_the_service_nor_the_command_line() -> None:
    for path, text in _sources("engine").items():
        bad = {m for m in _imports(text) if m.split(".")[0] in ("api", "cli", "fastapi")}
        assert not bad, f"{path} imports {sorted(bad)}"


def test_durable_rules_is_imported_by_the_seam_alone() -> None:
    importers = [
        path
        for path, text in _sources(*PACKAGES, "benchmarks").items()
        if any(m.split(".")[0] in ("durable", "durable_rules_engine") for m in _imports(text))
    ]
    assert importers == ["engine/runtime/_durable.py"]


@pytest.mark.parametrize("folder", ["api", "cli", "benchmarks", "tests"])
def test_nothing_outside_the_engine_reaches_private_ruleset_fields(folder: str) -> None:
    pattern = re.compile(r"\._c\b|\._prog\b|\._engine\b")
    hits = [
        f"{path}:{n}"
        for path, text in _sources(folder).items()
        for n, line in enumerate(text.splitlines(), 1)
        if pattern.search(line) and path != "tests/test_architecture.py"
    ]
    assert not hits


@pytest.mark.parametrize(
    ("what", "pattern", "home"),
    [
        ("the 1e15 limit", r"\b1e15\b|\b1e\+15\b|10\s*\*\*\s*15", "engine/limits.py"),
        ("the did-you-mean helper", r"get_close_matches", "engine/hints.py"),
        ("the severity order", r"[\"']info[\"'],\s*[\"']warning[\"'],\s*[\"']high", None),
        ("a YAML loader", r"\.load\(", None),
    ],
)
def test_one_of_each(what: str, pattern: str, home: str | None) -> None:
    regex = re.compile(pattern)
    found = sorted(
        path
        for path, text in _sources(*PACKAGES).items()
        if any(
            regex.search(line) for line in text.splitlines() if not line.lstrip().startswith("#")
        )
    )
    if what == "the severity order":
        assert found == ["engine/lang/model.py"], found
    elif what == "a YAML loader":
        # ruamel's load() is called by the one bounded reader; json.load(s) is not YAML
        yaml_loads = [p for p in found if "yaml.load(" in (ROOT / p).read_text(encoding="utf-8")]
        assert yaml_loads == ["engine/lang/source.py"], yaml_loads
    else:
        assert found == [home], f"{what} is written in {found}"
