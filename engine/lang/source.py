"""Reading ruleset YAML with positions (stage "parse" of the compiler)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from engine.errors import Diagnostic

MAX_SOURCE_BYTES = 2_000_000
MAX_FLOW_DEPTH = 64  # the YAML parser slows quadratically on deep nesting; rulesets need ~3
# YAML aliases (`*name`) share one node; expanding them copies it. Nested aliases grow
# exponentially (7 levels of `&a [*a, ...x10]` in 1.2 KB expand to 10 million nodes), so both
# the number of aliases and the size after expansion are capped before anything is built.
# The default ruleset and its cases expand to about 1,300 and 1,600 nodes, with no alias.
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 100_000


def source_digest(text: str) -> str:
    """The digest of a ruleset's source text: ``sha256:<hex of its UTF-8 bytes>``.

    A ruleset's identity wherever it travels (the API's listings, the decision log, Spark
    executors, published versions): the same text always gives the same digest.
    """
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _flow_depth(text: str) -> int:
    """Deepest nesting of [ and { outside quotes and comments, or of block indentation
    (counted in steps of two spaces): a cheap bound checked before parsing."""
    depth = deepest = 0
    quote = ""
    for line in text.splitlines():
        quote = ""
        deepest = max(deepest, (len(line) - len(line.lstrip(" "))) // 2)
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'" and (i == 0 or line[i - 1] in " [{:,"):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] == " "):
                break
            elif ch in "[{":
                depth += 1
                deepest = max(deepest, depth)
            elif ch in "]}":
                depth = max(0, depth - 1)
    return deepest


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
        """Where character `offset` of the expression at `path` sits in the file.

        YAML folds and strips white space (block scalars, multi-line plain scalars, leading
        blanks), so the offset is mapped by counting the non-blank characters before it,
        which every scalar style keeps in order.
        """
        line, col = self.position(path)
        value = self._node(path)
        if not isinstance(value, str):
            return line, col
        lines = self.text.splitlines()
        row, column = line - 1, col - 1
        if isinstance(value, LiteralScalarString | FoldedScalarString):
            row, column = line, 0  # content starts on the line after `|` / `>`
        elif isinstance(value, DoubleQuotedScalarString | SingleQuotedScalarString):
            column += 1
        flat = " ".join(value.split()) if "\n" in value.strip() else value.strip()
        wanted = sum(1 for ch in flat[:offset] if not ch.isspace())
        seen = 0
        while row < len(lines):
            text = lines[row]
            while column < len(text):
                if not text[column].isspace():
                    if seen == wanted:
                        return row + 1, column + 1
                    seen += 1
                column += 1
            row, column = row + 1, 0
        return line, col

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


def load_yaml(file: str, text: str, yaml: YAML | None = None) -> tuple[Any, list[Diagnostic]]:
    """Parse any kaq YAML file (ruleset, test cases) bounded: the round-trip tree, or the
    located diagnostics that stop it. The one reader: size, nesting and aliases are capped
    before anything else looks at the tree.

    `yaml` is the round-trip loader to use (`kaq fmt` dumps with its own settings).
    """
    if len(text.encode("utf-8")) > MAX_SOURCE_BYTES:
        return None, [
            Diagnostic(
                file, 1, 1, "yaml.too_large", f"file is larger than {MAX_SOURCE_BYTES} bytes"
            )
        ]
    depth = _flow_depth(text)
    if depth > MAX_FLOW_DEPTH:
        return None, [
            Diagnostic(
                file,
                1,
                1,
                "yaml.too_deep",
                f"the YAML nests {depth} levels deep; the limit is {MAX_FLOW_DEPTH}",
            )
        ]
    if yaml is None:
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
        hint = hint or _yaml_hint(f"{exc.context or ''} {exc.problem or ''}")
        return None, [Diagnostic(file, line, col, code, problem.strip(), hint)]
    except (YAMLError, ValueError, RecursionError) as exc:
        return None, [Diagnostic(file, 1, 1, "yaml.syntax", str(exc).splitlines()[0])]
    if isinstance(doc, dict | list):
        problem = _alias_problem(file, text, doc)
        if problem is not None:
            return None, [problem]
    return doc, []


def read_yaml(file: str, text: str) -> tuple[Source | None, list[Diagnostic]]:
    """Parse a ruleset's YAML text; on any problem, the located diagnostics."""
    doc, diags = load_yaml(file, text)
    if diags:
        return None, diags
    if not isinstance(doc, CommentedMap):
        return None, [
            Diagnostic(file, 1, 1, "yaml.not_a_mapping", "a ruleset file is a YAML mapping")
        ]
    return Source(file, text, doc), []


def _alias_problem(file: str, text: str, doc: Any) -> Diagnostic | None:
    """A located diagnostic when aliases are too many or expand too far, else None.

    The parsed tree shares one node per anchor, so its expanded size is counted on the
    shared nodes (each once, with a memo), and an alias of a mapping or list is a node met
    a second time: the check is linear in the text, whatever the expansion would be.
    """
    sizes: dict[int, int] = {}

    def expanded(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if isinstance(node, dict):
            n = 1 + sum(expanded(v) for v in node.values())
        elif isinstance(node, list):
            n = 1 + sum(expanded(v) for v in node)
        else:
            n = 1
        sizes[key] = n
        return n

    total = expanded(doc)
    seen: set[int] = {id(doc)}
    uses = 0

    def visit(node: Any) -> None:
        nonlocal uses
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if id(child) in seen:
                    uses += 1
                else:
                    seen.add(id(child))
                    visit(child)

    visit(doc)
    if uses <= MAX_ALIASES and total <= MAX_EXPANDED_NODES:
        return None
    # Locate it: the parsed tree keeps the anchor's position for an alias, so the alias
    # tokens are found in the event stream (only now, on a ruleset that is refused).
    anchored = {
        node.anchor.value: sizes[id(node)]
        for node in _containers(doc)
        if getattr(node, "anchor", None) is not None and node.anchor.value
    }
    marks: list[tuple[int, int, int]] = []  # (line, col, expanded size) per container alias
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, AliasEvent) and event.anchor in anchored:
            m = event.start_mark
            marks.append((m.line + 1, m.column + 1, anchored[event.anchor]))
    if uses > MAX_ALIASES:
        line, col, _n = marks[MAX_ALIASES] if len(marks) > MAX_ALIASES else (1, 1, 0)
        return Diagnostic(
            file,
            line,
            col,
            "yaml.too_many_aliases",
            f"the YAML uses {uses} aliases (`*name`) of mappings or lists; "
            f"the limit is {MAX_ALIASES}",
            "write the repeated values out instead of referring to an anchor",
        )
    line, col, _n = max(marks, key=lambda m: m[2]) if marks else (1, 1, 0)
    return Diagnostic(
        file,
        line,
        col,
        "yaml.too_large",
        f"the YAML expands to {total:,} values once its aliases are copied out; "
        f"the limit is {MAX_EXPANDED_NODES:,}",
        "an alias of an alias multiplies: write the values out, or alias fewer levels",
    )


def _containers(doc: Any) -> list[Any]:
    """Every distinct mapping and list of the tree, each once."""
    out: list[Any] = []
    seen: set[int] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(
            c
            for c in (node.values() if isinstance(node, dict) else node)
            if isinstance(c, dict | list)
        )
    return out


_YAML_HINTS = (
    (
        "mapping values are not allowed",
        "is a `:` missing after a key on the line above, or "
        "is this line indented too far? A value that contains `: ` needs quotes",
    ),
    ("'\\t'", "indent with spaces: YAML does not allow tabs"),
    ("expected <block end>", "check this line's indentation against the lines above it"),
    ("could not find expected ':'", "a key needs a `:` after it; check the indentation too"),
    ("quoted scalar", "a quote is not closed"),
    ("expected ',' or '}'", "inside { }, quote values that contain `:`, `{`, `}` or `,`"),
    ("expected ',' or ']'", "inside [ ], quote values that contain `:`, `[`, `]` or `,`"),
)


def _yaml_hint(problem: str) -> str | None:
    for needle, hint in _YAML_HINTS:
        if needle in problem:
            return hint
    return None


def plain(node: Any) -> Any:
    """The ruamel tree as plain Python data (dict, list, str, int, float, bool, None).

    An anchored boolean (`&on true`) is a ruamel ScalarBoolean, an int subclass, not a
    bool: it is tested before int so that it stays a boolean.
    """
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [plain(v) for v in node]
    if isinstance(node, bool | ScalarBoolean):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node
