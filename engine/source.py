"""Reading ruleset YAML with positions (stage "parse" of the compiler)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from .errors import Diagnostic

MAX_SOURCE_BYTES = 2_000_000


@dataclass
class Source:
    """A parsed YAML document with the positions of its nodes."""

    file: str
    text: str
    doc: Any  # ruamel round-trip tree

    def position(self, path: tuple[Any, ...]) -> tuple[int, int]:
        """1-based (line, col) of the value at `path`, or of its deepest existing ancestor."""
        node = self.doc
        line, col = 1, 1
        if isinstance(node, CommentedMap | CommentedSeq):
            line, col = node.lc.line + 1, node.lc.col + 1
        for key in path:
            if isinstance(node, CommentedMap) and key in node:
                try:
                    ln, cl = node.lc.value(key)
                except (KeyError, TypeError):
                    ln, cl = node.lc.key(key)
                child = node[key]
                if isinstance(child, CommentedMap | CommentedSeq) and child:
                    ln, cl = child.lc.line, child.lc.col
                line, col = ln + 1, cl + 1
                node = child
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                ln, cl = node.lc.item(key)
                line, col = ln + 1, cl + 1
                node = node[key]
            else:
                break
        return line, col

    def key_position(self, path: tuple[Any, ...]) -> tuple[int, int]:
        """1-based (line, col) of the key that ends `path` (for duplicate / unknown keys)."""
        parent = self._node(path[:-1])
        if isinstance(parent, CommentedMap) and path[-1] in parent:
            ln, cl = parent.lc.key(path[-1])
            return ln + 1, cl + 1
        return self.position(path)

    def expr_position(self, path: tuple[Any, ...], offset: int) -> tuple[int, int]:
        """Where character `offset` of the expression at `path` sits in the file."""
        line, col = self.position(path)
        value = self._node(path)
        if isinstance(value, DoubleQuotedScalarString | SingleQuotedScalarString):
            return line, col + 1 + offset
        if isinstance(value, LiteralScalarString | FoldedScalarString):
            return line + 1, col + offset
        return line, col + offset

    def _node(self, path: tuple[Any, ...]) -> Any:
        node = self.doc
        for key in path:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return None
        return node

    def diag(
        self, path: tuple[Any, ...], code: str, message: str, hint: str | None = None
    ) -> Diagnostic:
        line, col = self.position(path)
        return Diagnostic(self.file, line, col, code, message, hint)


def read_yaml(file: str, text: str) -> tuple[Source | None, list[Diagnostic]]:
    """Parse YAML text; on a syntax error return the located diagnostic."""
    if len(text.encode("utf-8")) > MAX_SOURCE_BYTES:
        return None, [
            Diagnostic(
                file, 1, 1, "yaml.too_large", f"file is larger than {MAX_SOURCE_BYTES} bytes"
            )
        ]
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        code = "yaml.duplicate_key" if "duplicate" in str(exc) else "yaml.syntax"
        hint = "keys must be unique in a mapping" if code == "yaml.duplicate_key" else None
        return None, [Diagnostic(file, line, col, code, problem.strip(), hint)]
    except (YAMLError, ValueError, RecursionError) as exc:
        return None, [Diagnostic(file, 1, 1, "yaml.syntax", str(exc).splitlines()[0])]
    if not isinstance(doc, CommentedMap):
        return None, [
            Diagnostic(file, 1, 1, "yaml.not_a_mapping", "a ruleset file is a YAML mapping")
        ]
    return Source(file, text, doc), []


def plain(node: Any) -> Any:
    """The ruamel tree as plain Python data (dict, list, str, int, float, bool, None)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node
