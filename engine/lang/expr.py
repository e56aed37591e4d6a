"""The expression language: parse (whitelisted `ast`), type-check, evaluate (Kleene).

An expression is parsed by Python's `ast` module in `eval` mode and converted node by
node into kaq's own small tree; any node outside the whitelist is an error located in
the expression. Nothing is ever `eval`ed. Evaluation uses three-valued logic: `None`
stands for *unknown*.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.hints import suggest
from engine.limits import MAX_MAGNITUDE, MAX_MAGNITUDE_TEXT, ROUND_DIGITS

MAX_SOURCE_CHARS = 2000
MAX_NODES = 200
MAX_DEPTH = 24
MAX_AT_LEAST_TERMS = 6

FUNCTIONS = ("abs", "at_least", "count", "known", "len", "max", "min")
KEYWORDS = ("true", "false", "and", "or", "not", "in")

# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Type:
    """A static type: number, string (values=None: free text; else an enum), bool, list."""

    kind: str  # "number" | "string" | "bool" | "list"
    values: tuple[str, ...] | None = None

    def __str__(self) -> str:
        if self.kind == "string" and self.values is not None and len(self.values) > 1:
            return "enum"
        if self.kind == "string":
            return "text"
        if self.kind == "list":
            return "list"
        return self.kind


NUMBER = Type("number")
STRING = Type("string")
BOOL = Type("bool")


class ExprError(Exception):
    """A problem in one expression, at a character offset of its source."""

    def __init__(self, code: str, message: str, offset: int = 0, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.offset = offset
        self.hint = hint


# --------------------------------------------------------------------------- tree


@dataclass(eq=False)
class Node:
    offset: int = field(default=0, kw_only=True)
    type: Type = field(default=NUMBER, kw_only=True)


@dataclass(eq=False)
class Const(Node):
    value: Any


@dataclass(eq=False)
class Name(Node):
    """A fact, derived fact, param or outcome variable; `scope` is set by the resolver."""

    name: str
    scope: str = ""  # "fact" | "derived" | "param" | "outcome"
    value: Any = None  # the param's value when scope == "param"


@dataclass(eq=False)
class Arith(Node):
    op: str  # + - * /
    left: Node
    right: Node


@dataclass(eq=False)
class Neg(Node):
    operand: Node


@dataclass(eq=False)
class Cmp(Node):
    op: str  # == != < <= > >=
    left: Node
    right: Node
    text: str = ""


@dataclass(eq=False)
class In(Node):
    item: Node
    container: Node
    negated: bool = False
    text: str = ""


@dataclass(eq=False)
class And(Node):
    items: list[Node]


@dataclass(eq=False)
class Or(Node):
    items: list[Node]


@dataclass(eq=False)
class Not(Node):
    operand: Node


@dataclass(eq=False)
class Call(Node):
    func: str
    args: list[Node]


@dataclass(eq=False)
class ListLit(Node):
    values: list[Any]


def children(node: Node) -> list[Node]:
    """Direct sub-expressions of a node."""
    if isinstance(node, Arith | Cmp):
        return [node.left, node.right]
    if isinstance(node, In):
        return [node.item, node.container]
    if isinstance(node, And | Or):
        return list(node.items)
    if isinstance(node, Neg | Not):
        return [node.operand]
    if isinstance(node, Call):
        return list(node.args)
    return []


def walk(node: Node):
    """Every node of the tree, pre-order."""
    yield node
    for child in children(node):
        yield from walk(child)


def names(node: Node) -> list[Name]:
    return [n for n in walk(node) if isinstance(n, Name)]


# --------------------------------------------------------------------------- parse

_CMP_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITH_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_DISALLOWED = {
    ast.Attribute: "attribute access (`a.b`)",
    ast.Subscript: "indexing (`a[b]`)",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.IfExp: "conditional expression (`a if b else c`)",
    ast.Dict: "dictionary literal",
    ast.Set: "set literal",
    ast.Tuple: "tuple",
    ast.Starred: "star expression",
    ast.NamedExpr: "assignment (`:=`)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
}


def parse(source: str) -> Node:
    """Parse an expression into kaq's tree; raises ExprError on anything not whitelisted."""
    if not isinstance(source, str) or not source.strip():
        raise ExprError("expr.empty", "empty expression")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExprError(
            "expr.too_large",
            f"expression is {len(source)} characters long; the limit is {MAX_SOURCE_CHARS}",
            hint="split it into derived facts",
        )
    if "\n" in source.strip():
        source = " ".join(source.split())
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(
            "expr.syntax",
            f"syntax error: {exc.msg}",
            max(0, (exc.offset or 1) - 1),
            hint=_syntax_hint(source),
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError("expr.too_large", "expression is nested too deeply") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExprError(
            "expr.too_large",
            f"expression has {count} nodes; the limit is {MAX_NODES}",
            hint="split it into derived facts",
        )
    text = source.strip()
    return _convert(tree.body, text, 0)


def _convert(node: ast.AST, text: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise ExprError("expr.too_large", f"expression is nested deeper than {MAX_DEPTH}")
    off = getattr(node, "col_offset", 0)
    d = depth + 1
    if isinstance(node, ast.BoolOp):
        items = [_convert(v, text, d) for v in node.values]
        return And(items, offset=off) if isinstance(node.op, ast.And) else Or(items, offset=off)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return Not(_convert(node.operand, text, d), offset=off)
        if isinstance(node.op, ast.USub):
            inner = _convert(node.operand, text, d)
            if isinstance(inner, Const) and isinstance(inner.value, int | float):
                return Const(-inner.value, offset=off)
            return Neg(inner, offset=off)
        if isinstance(node.op, ast.UAdd):
            return _convert(node.operand, text, d)
        raise ExprError("expr.disallowed", "operator `~` is not allowed", off)
    if isinstance(node, ast.BinOp):
        op = _ARITH_OPS.get(type(node.op))
        if op is None:
            raise ExprError(
                "expr.disallowed",
                f"operator `{_op_text(node.op)}` is not allowed",
                off,
                hint="use + - * / only",
            )
        return Arith(op, _convert(node.left, text, d), _convert(node.right, text, d), offset=off)
    if isinstance(node, ast.Compare):
        parts: list[Node] = []
        left = _convert(node.left, text, d)
        seg = ast.get_source_segment(text, node) or text
        for cmp_op, right_ast in zip(node.ops, node.comparators, strict=True):
            right = _convert(right_ast, text, d)
            if isinstance(cmp_op, ast.In | ast.NotIn):
                parts.append(In(left, right, isinstance(cmp_op, ast.NotIn), offset=off, text=seg))
            elif type(cmp_op) in _CMP_OPS:
                parts.append(Cmp(_CMP_OPS[type(cmp_op)], left, right, offset=off, text=seg))
            else:
                raise ExprError(
                    "expr.disallowed", "`is` / `is not` are not allowed", off, hint="use == or !="
                )
            left = right
        if len(parts) > 1:
            for p in parts:
                if isinstance(p, Cmp | In):
                    p.text = _cmp_text(p)
        return parts[0] if len(parts) == 1 else And(parts, offset=off)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExprError("expr.disallowed", "only plain function calls are allowed", off)
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise ExprError(
                "expr.unknown_function",
                f"unknown function `{fname}`",
                off,
                hint=suggest(fname, FUNCTIONS, "allowed: " + ", ".join(FUNCTIONS)),
            )
        if node.keywords:
            raise ExprError("expr.disallowed", "keyword arguments are not allowed", off)
        return Call(fname, [_convert(a, text, d) for a in node.args], offset=off)
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise ExprError("expr.disallowed", f"dunder name `{node.id}` is not allowed", off)
        if node.id == "true":
            return Const(True, offset=off)
        if node.id == "false":
            return Const(False, offset=off)
        return Name(node.id, offset=off)
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or v is None:
            raise ExprError(
                "expr.disallowed",
                f"`{v}` is not part of the language",
                off,
                hint="write true / false; use known(x) to test presence",
            )
        if isinstance(v, int | float):
            if isinstance(v, float) and not math.isfinite(v):
                raise ExprError("expr.disallowed", "non-finite number", off)
            if abs(v) > MAX_MAGNITUDE:
                raise ExprError(
                    "expr.value_range", f"number {v} is beyond ±{MAX_MAGNITUDE_TEXT}", off
                )
            return Const(v, offset=off)
        if isinstance(v, str):
            return Const(v, offset=off)
        raise ExprError(
            "expr.disallowed", f"literal of type {type(v).__name__} is not allowed", off
        )
    if isinstance(node, ast.List):
        values = []
        for elt in node.elts:
            item = _convert(elt, text, d)
            if not isinstance(item, Const):
                raise ExprError(
                    "expr.disallowed", "list literals may only hold literal values", item.offset
                )
            values.append(item.value)
        return ListLit(values, offset=off)
    what = _DISALLOWED.get(type(node), type(node).__name__)
    raise ExprError("expr.disallowed", f"{what} is not allowed in a kaq expression", off)


_OP_TEXT: dict[type, str] = {
    ast.Mod: "%",
    ast.Pow: "**",
    ast.FloorDiv: "//",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}


_SYNTAX_HINTS = (
    ("&&", "write `and` instead of `&&`"),
    ("||", "write `or` instead of `||`"),
    ("=<", "write `<=` instead of `=<`"),
    ("=>", "write `>=` instead of `=>`"),
    ("<>", "write `!=` instead of `<>`"),
    ("!", "write `not` instead of `!`"),
)


def _syntax_hint(source: str) -> str | None:
    for token, hint in _SYNTAX_HINTS:
        if token in source.replace("!=", ""):
            return hint
    if source.count("(") != source.count(")"):
        return "the parentheses do not balance"
    if source.count("'") % 2 or source.count('"') % 2:
        return "a quote is not closed"
    if "=" in source.replace("==", "").replace("!=", "").replace("<=", "").replace(">=", ""):
        return "compare with `==`; a single `=` assigns"
    return None


def _op_text(op: ast.AST) -> str:
    return _OP_TEXT.get(type(op), type(op).__name__)


def _cmp_text(node: Cmp | In) -> str:
    if isinstance(node, In):
        op = "not in" if node.negated else "in"
        return f"{unparse(node.item)} {op} {unparse(node.container)}"
    return f"{unparse(node.left)} {node.op} {unparse(node.right)}"


def unparse(node: Node) -> str:
    """Readable source text of a node (used in traces)."""
    if isinstance(node, Const):
        return repr(node.value) if isinstance(node.value, str) else _num_text(node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, ListLit):
        return "[" + ", ".join(repr(v) for v in node.values) + "]"
    if isinstance(node, Arith):
        return f"({unparse(node.left)} {node.op} {unparse(node.right)})"
    if isinstance(node, Neg):
        return f"-{unparse(node.operand)}"
    if isinstance(node, Cmp | In):
        return node.text or _cmp_text(node)
    if isinstance(node, And | Or):
        word = " and " if isinstance(node, And) else " or "
        return "(" + word.join(unparse(i) for i in node.items) + ")"
    if isinstance(node, Not):
        return f"not {unparse(node.operand)}"
    if isinstance(node, Call):
        return f"{node.func}(" + ", ".join(unparse(a) for a in node.args) + ")"
    return "?"


def _num_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


# --------------------------------------------------------------------------- resolve + type-check


@dataclass
class Symbol:
    scope: str  # fact | derived | param | outcome
    type: Type
    value: Any = None  # params only


def check(node: Node, symbols: Mapping[str, Symbol], want_bool: bool = True) -> Type:
    """Resolve names and type-check; raises ExprError. Returns the expression's type."""
    t = _check(node, symbols)
    if want_bool and t != BOOL:
        raise ExprError(
            "expr.type",
            f"a condition must be true or false, but this expression is a {t}",
            node.offset,
        )
    return t


def _literal_type(v: Any) -> Type:
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int | float):
        return NUMBER
    return Type("string", (v,))


def _check(node: Node, symbols: Mapping[str, Symbol]) -> Type:
    if isinstance(node, Const):
        node.type = _literal_type(node.value)
        return node.type
    if isinstance(node, Name):
        sym = symbols.get(node.name)
        if sym is None:
            if node.name in KEYWORDS or node.name in ("True", "False", "None"):
                raise ExprError(
                    "expr.disallowed",
                    f"`{node.name}` is not part of the language",
                    node.offset,
                    hint="write true / false",
                )
            raise ExprError(
                "expr.unknown_name",
                f"unknown fact or param `{node.name}`",
                node.offset,
                hint=suggest(node.name, symbols.keys()),
            )
        node.scope = sym.scope
        node.value = sym.value
        node.type = sym.type
        return sym.type
    if isinstance(node, ListLit):
        kinds = {_literal_type(v).kind for v in node.values}
        if len(kinds) > 1:
            raise ExprError("expr.type", "list literal mixes types", node.offset)
        node.type = Type("list", tuple(str(v) for v in node.values))
        node.type = Type("listlit:" + (kinds.pop() if kinds else "string"), node.type.values)
        return node.type
    if isinstance(node, Arith):
        for side in (node.left, node.right):
            t = _check(side, symbols)
            if t != NUMBER:
                raise ExprError("expr.type", f"arithmetic needs numbers, got a {t}", side.offset)
        node.type = NUMBER
        return NUMBER
    if isinstance(node, Neg):
        if _check(node.operand, symbols) != NUMBER:
            raise ExprError("expr.type", "unary minus needs a number", node.offset)
        node.type = NUMBER
        return NUMBER
    if isinstance(node, Cmp):
        lt = _check(node.left, symbols)
        rt = _check(node.right, symbols)
        _check_comparable(node, lt, rt)
        node.type = BOOL
        return BOOL
    if isinstance(node, In):
        it = _check(node.item, symbols)
        ct = _check(node.container, symbols)
        if ct.kind.startswith("listlit:"):
            elem = ct.kind.split(":", 1)[1]
            if it.kind == "list" or it.kind != elem:
                raise ExprError(
                    "expr.type", f"`in` compares a {it} with a list of {elem}s", node.offset
                )
            if it.kind == "string" and it.values is not None:
                for v in ct.values or ():
                    if v not in it.values:
                        raise ExprError(
                            "expr.type",
                            f"`{v}` is not a value of `{unparse(node.item)}`",
                            node.offset,
                            hint=suggest(v, it.values, "values: " + ", ".join(it.values)),
                        )
        elif ct.kind == "list":
            if it.kind != "string":
                raise ExprError(
                    "expr.type", f"`in` on a list needs a string, got a {it}", node.offset
                )
            if isinstance(node.item, Const) and ct.values and node.item.value not in ct.values:
                raise ExprError(
                    "expr.type",
                    f"`{node.item.value}` is not a value of `{unparse(node.container)}`",
                    node.offset,
                    hint=suggest(
                        str(node.item.value), ct.values, "values: " + ", ".join(ct.values)
                    ),
                )
        else:
            raise ExprError(
                "expr.type", f"the right side of `in` must be a list, got a {ct}", node.offset
            )
        node.type = BOOL
        return BOOL
    if isinstance(node, And | Or):
        for item in node.items:
            if _check(item, symbols) != BOOL:
                word = "and" if isinstance(node, And) else "or"
                raise ExprError(
                    "expr.type", f"`{word}` needs conditions on both sides", item.offset
                )
        node.type = BOOL
        return BOOL
    if isinstance(node, Not):
        if _check(node.operand, symbols) != BOOL:
            raise ExprError("expr.type", "`not` needs a condition", node.offset)
        node.type = BOOL
        return BOOL
    if isinstance(node, Call):
        return _check_call(node, symbols)
    raise ExprError("expr.disallowed", "unsupported expression", node.offset)


def _check_comparable(node: Cmp, lt: Type, rt: Type) -> None:
    if (
        lt.kind.startswith("listlit")
        or rt.kind.startswith("listlit")
        or "list" in (lt.kind, rt.kind)
    ):
        raise ExprError("expr.type", "lists cannot be compared; use `in` or len()", node.offset)
    if lt.kind != rt.kind:
        hint = None
        for side in (node.left, node.right):
            if isinstance(side, Name) and side.scope == "param":
                hint = f"param `{side.name}` is {side.value!r}; is that the type you meant?"
        raise ExprError(
            "expr.type",
            f"cannot compare a {lt} with a {rt} (`{node.text or unparse(node)}`)",
            node.offset,
            hint=hint,
        )
    if lt.kind in ("string", "bool") and node.op not in ("==", "!="):
        raise ExprError(
            "expr.type", f"`{node.op}` needs numbers; a {lt} takes == or !=", node.offset
        )
    if lt.kind == "string":
        # an enum compared with a literal it cannot take is always false: a typo
        for a, b in ((node.left, rt), (node.right, lt)):
            if isinstance(a, Const) and b.values is not None and len(b.values) > 1:
                if a.value not in b.values:
                    raise ExprError(
                        "expr.type",
                        f"`{a.value}` is not a possible value here",
                        node.offset,
                        hint=suggest(str(a.value), b.values, "values: " + ", ".join(b.values)),
                    )


def _check_call(node: Call, symbols: Mapping[str, Symbol]) -> Type:
    f, args = node.func, node.args
    types = [_check(a, symbols) for a in args]

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ExprError("expr.call", f"{f}(): {msg}", node.offset)

    if f in ("min", "max"):
        need(len(args) >= 2, "needs at least two numbers")
        need(all(t == NUMBER for t in types), "takes numbers")
        node.type = NUMBER
    elif f == "abs":
        need(len(args) == 1 and types[0] == NUMBER, "takes one number")
        node.type = NUMBER
    elif f == "len":
        need(len(args) == 1 and types[0].kind == "list", "takes one list fact")
        node.type = NUMBER
    elif f == "count":
        need(
            len(args) == 2 and types[0].kind == "list" and types[1].kind == "listlit:string",
            "takes a list fact and a list of values: count(support_activities, ['a', 'b'])",
        )
        allowed = types[0].values or ()
        for v in args[1].values if isinstance(args[1], ListLit) else ():
            if v not in allowed:
                raise ExprError(
                    "expr.type",
                    f"`{v}` is not a value of `{unparse(args[0])}`",
                    node.offset,
                    hint=suggest(v, allowed, "values: " + ", ".join(allowed)),
                )
        node.type = NUMBER
    elif f == "known":
        need(len(args) == 1 and isinstance(args[0], Name), "takes one fact name")
        node.type = BOOL
    elif f == "at_least":
        need(
            len(args) >= 2 and isinstance(args[0], Const) and isinstance(args[0].value, int),
            "takes a whole number then conditions: at_least(2, a > 1, b, c)",
        )
        need(all(t == BOOL for t in types[1:]), "the items after the number must be conditions")
        need(len(args) - 1 <= MAX_AT_LEAST_TERMS, f"takes at most {MAX_AT_LEAST_TERMS} conditions")
        need(
            1 <= args[0].value <= len(args) - 1,  # type: ignore[attr-defined]
            "the number must be between 1 and the count of conditions",
        )
        node.type = BOOL
    return node.type


# --------------------------------------------------------------------------- evaluate (Kleene)


def fin(v: Any) -> Any:
    """An arithmetic result: exact, except that an overflow to infinity is unknown."""
    if type(v) is float and not math.isfinite(v):
        return None
    return v


def rnd(v: Any) -> Any:
    """Round numbers to the comparison precision; leave everything else."""
    if isinstance(v, float):
        if v.is_integer():  # a whole number is its own rounding (and round() is slow)
            return int(v) if abs(v) < 2**53 else v
        if not math.isfinite(v):
            return None  # an overflowing computation is unknown, never infinite
        r = round(v, ROUND_DIGITS)
        return int(r) if r.is_integer() and abs(r) < 2**53 else r
    return v


def evaluate(node: Node, env: Mapping[str, Any]) -> Any:
    """Value of `node` in `env` (missing name = unknown = None), Kleene logic."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        return node.value if node.scope == "param" else env.get(node.name)
    if isinstance(node, ListLit):
        return node.values
    if isinstance(node, Arith):
        a = evaluate(node.left, env)
        b = evaluate(node.right, env)
        if node.op == "*":
            if (a == 0 and a is not None) or (b == 0 and b is not None):
                return 0
        if a is None or b is None:
            return None
        if node.op == "+":
            return fin(a + b)
        if node.op == "-":
            return fin(a - b)
        if node.op == "*":
            return fin(a * b)
        if b == 0:
            return None
        return fin(a / b)
    if isinstance(node, Neg):
        v = evaluate(node.operand, env)
        return None if v is None else -v
    if isinstance(node, Cmp):
        return compare(node.op, operand(node.left, env), operand(node.right, env))
    if isinstance(node, In):
        item = evaluate(node.item, env)
        cont = evaluate(node.container, env)
        if item is None or cont is None:
            return None
        found = item in cont
        return (not found) if node.negated else found
    if isinstance(node, And):
        result: bool | None = True
        for it in node.items:
            v = evaluate(it, env)
            if v is False:
                return False
            if v is None:
                result = None
        return result
    if isinstance(node, Or):
        result = False
        for it in node.items:
            v = evaluate(it, env)
            if v is True:
                return True
            if v is None:
                result = None
        return result
    if isinstance(node, Not):
        v = evaluate(node.operand, env)
        return None if v is None else not v
    if isinstance(node, Call):
        return _call(node, env)
    raise TypeError(f"cannot evaluate {node!r}")


def computed(node: Node) -> bool:
    """Is the node's value computed (arithmetic, a call), not a fact, param or literal?"""
    return not isinstance(node, Const | Name | ListLit)


def operand(node: Node, env: Mapping[str, Any]) -> Any:
    """A comparison operand's value: exact for a name or a literal (policy §2: input facts are
    compared as sent; derived facts are rounded when they are computed), rounded to the
    comparison precision for a value computed inside the condition."""
    v = evaluate(node, env)
    return rnd(v) if computed(node) else v


def compare(op: str, a: Any, b: Any) -> bool | None:
    """`a op b` of two operand values (see :func:`operand`), exactly; unknown if either is."""
    if a is None or b is None:
        return None
    return _CMP[op](a, b)


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
NEGATED_OP = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
FLIPPED_OP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _call(node: Call, env: Mapping[str, Any]) -> Any:
    f = node.func
    if f == "known":
        return evaluate(node.args[0], env) is not None
    if f == "at_least":
        n = node.args[0].value  # type: ignore[attr-defined]
        vals = [evaluate(a, env) for a in node.args[1:]]
        trues = sum(1 for v in vals if v is True)
        unknown = sum(1 for v in vals if v is None)
        if trues >= n:
            return True
        if trues + unknown < n:
            return False
        return None
    args = [evaluate(a, env) for a in node.args]
    if f == "count":
        if args[0] is None:
            return None
        wanted = set(args[1])
        return sum(1 for v in set(args[0]) if v in wanted)
    if any(a is None for a in args):
        return None
    if f == "min":
        return min(args)
    if f == "max":
        return max(args)
    if f == "abs":
        return abs(args[0])
    if f == "len":
        return len(set(args[0]))
    raise TypeError(f)


def at_least_expansion(node: Call, negate: bool) -> list[list[tuple[Node, bool]]]:
    """`at_least(n, c...)` as OR over AND-groups of (condition, polarity).

    not at_least(n, k conditions) == at_least(k - n + 1, negated conditions) under Kleene logic.
    """
    n = node.args[0].value  # type: ignore[attr-defined]
    conds = node.args[1:]
    k = len(conds)
    need = (k - n + 1) if negate else n
    polarity = not negate
    return [[(c, polarity) for c in combo] for combo in itertools.combinations(conds, need)]


# --------------------------------------------------------------------------- closures
#
# The same semantics as `evaluate`, built once per node as nested closures: no dispatch on
# node types at evaluation time. `evaluate` stays the reference; a property test compares
# the two on random environments.


def closure(node: Node) -> Callable[[Mapping[str, Any]], Any]:
    """A function env -> value equivalent to ``evaluate(node, env)`` (cached on the node)."""
    fn = getattr(node, "_fn", None)
    if fn is None:
        fn = _build(node)
        object.__setattr__(node, "_fn", fn)
    return fn


def _build(node: Node) -> Callable[[Mapping[str, Any]], Any]:  # noqa: C901 - one case per node
    if isinstance(node, Const) or (isinstance(node, Name) and node.scope == "param"):
        value = node.value
        return lambda env: value
    if isinstance(node, Name):
        key = node.name
        return lambda env: env.get(key)
    if isinstance(node, ListLit):
        values = node.values
        return lambda env: values
    if isinstance(node, Arith):
        a, b, op = closure(node.left), closure(node.right), node.op
        if op == "*":

            def mul(env: Mapping[str, Any]) -> Any:
                x, y = a(env), b(env)
                if (x is not None and x == 0) or (y is not None and y == 0):
                    return 0
                return None if x is None or y is None else fin(x * y)

            return mul
        if op == "/":

            def div(env: Mapping[str, Any]) -> Any:
                x, y = a(env), b(env)
                return None if x is None or y is None or y == 0 else fin(x / y)

            return div
        if op == "+":
            return lambda env: (
                None if (x := a(env)) is None or (y := b(env)) is None else fin(x + y)
            )
        return lambda env: None if (x := a(env)) is None or (y := b(env)) is None else fin(x - y)
    if isinstance(node, Neg):
        f = closure(node.operand)
        return lambda env: None if (x := f(env)) is None else -x
    if isinstance(node, Cmp):
        cmp = _CMP[node.op]
        left, right = node.left, node.right
        if _is_name(left) and _constant(right) is not None:
            return _name_vs_constant(left.name, cmp, _constant(right))  # type: ignore[attr-defined]
        if _is_name(right) and _constant(left) is not None:
            flipped = _CMP[FLIPPED_OP[node.op]]
            return _name_vs_constant(right.name, flipped, _constant(left))  # type: ignore[attr-defined]
        a, b = operand_closure(left), operand_closure(right)

        def comparison(env: Mapping[str, Any]) -> Any:
            x, y = a(env), b(env)
            return None if x is None or y is None else cmp(x, y)

        return comparison
    if isinstance(node, In):
        if _is_name(node.item) and isinstance(node.container, ListLit):
            key, values, negated = node.item.name, node.container.values, node.negated  # type: ignore[attr-defined]
            return lambda env: None if (x := env.get(key)) is None else (x not in values) is negated
        item, cont, negated = closure(node.item), closure(node.container), node.negated

        def membership(env: Mapping[str, Any]) -> Any:
            x, c = item(env), cont(env)
            if x is None or c is None:
                return None
            return (x not in c) if negated else (x in c)

        return membership
    if isinstance(node, And):
        fs = [closure(i) for i in node.items]

        def conj(env: Mapping[str, Any]) -> Any:
            result: bool | None = True
            for f in fs:
                v = f(env)
                if v is False:
                    return False
                if v is None:
                    result = None
            return result

        return conj
    if isinstance(node, Or):
        fs = [closure(i) for i in node.items]

        def disj(env: Mapping[str, Any]) -> Any:
            result: bool | None = False
            for f in fs:
                v = f(env)
                if v is True:
                    return True
                if v is None:
                    result = None
            return result

        return disj
    if isinstance(node, Not):
        f = closure(node.operand)
        return lambda env: None if (x := f(env)) is None else not x
    if isinstance(node, Call):
        return _build_call(node)
    raise TypeError(f"cannot compile {node!r}")


def _is_name(node: Node) -> bool:
    """A fact, derived fact or outcome (a value looked up per account, not a param)."""
    return isinstance(node, Name) and node.scope != "param"


def _name_vs_constant(
    key: str, cmp: Callable[[Any, Any], bool], constant: Any
) -> Callable[[Mapping[str, Any]], Any]:
    """`name op constant`, the commonest condition, in one closure, exactly (as in Cmp)."""

    def name_vs_constant(env: Mapping[str, Any]) -> Any:
        x = env.get(key)
        return None if x is None else cmp(x, constant)

    return name_vs_constant


def operand_closure(node: Node) -> Callable[[Mapping[str, Any]], Any]:
    """env -> :func:`operand` of the node (a computed value rounded, a name's exact)."""
    f = closure(node)
    if not computed(node):
        return f
    return lambda env: rnd(f(env))


def _build_call(node: Call) -> Callable[[Mapping[str, Any]], Any]:
    f = node.func
    if f == "known":
        arg = closure(node.args[0])
        return lambda env: arg(env) is not None
    if f == "at_least":
        n = node.args[0].value  # type: ignore[attr-defined]
        conds = [closure(a) for a in node.args[1:]]

        def at_least(env: Mapping[str, Any]) -> Any:
            trues = unknown = 0
            for c in conds:
                v = c(env)
                if v is True:
                    trues += 1
                elif v is None:
                    unknown += 1
            if trues >= n:
                return True
            return False if trues + unknown < n else None

        return at_least
    args = [closure(a) for a in node.args]
    if f == "count":
        lst, wanted = args[0], set(node.args[1].values)  # type: ignore[attr-defined]

        def count(env: Mapping[str, Any]) -> Any:
            v = lst(env)
            return None if v is None else sum(1 for x in set(v) if x in wanted)

        return count
    if f == "len":
        a0 = args[0]
        return lambda env: None if (v := a0(env)) is None else len(set(v))
    if f == "abs":
        a0 = args[0]
        return lambda env: None if (v := a0(env)) is None else abs(v)
    pick = min if f == "min" else max

    def extreme(env: Mapping[str, Any]) -> Any:
        vals = [a(env) for a in args]
        return None if any(v is None for v in vals) else pick(vals)

    return extreme


def _constant(node: Node) -> Any:
    """The value of a literal or param operand (None for anything evaluated per account)."""
    if isinstance(node, Const) or (isinstance(node, Name) and node.scope == "param"):
        return node.value
    return None


def comparison_closure(node: Node) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """env -> the trace record of one comparison: both sides, the operator, the result.

    The general form, for any comparison; :func:`comparisons_closure` fills the common
    shapes in place and is checked against this one.
    """
    if isinstance(node, Cmp):
        left, right, op = node.left, node.right, node.op
        cmp = _CMP[op]
        round_x, round_y = computed(left), computed(right)

        def result(x: Any, y: Any) -> Any:
            if x is None or y is None:
                return None
            return cmp(rnd(x) if round_x else x, rnd(y) if round_y else y)

    else:
        assert isinstance(node, In)
        left, right = node.item, node.container
        op = "not in" if node.negated else "in"
        negated = node.negated

        def result(x: Any, y: Any) -> Any:
            return None if x is None or y is None else ((x not in y) if negated else (x in y))

    param = None
    for side in (right, left):
        if isinstance(side, Name) and side.scope == "param":
            param = side.name
            break
    text = unparse(node)
    copy_right = isinstance(right, ListLit)  # verdicts never share the program's lists
    lf, rf = closure(left), closure(right)

    def record(env: Mapping[str, Any]) -> dict[str, Any]:
        x, y = lf(env), rf(env)
        return {
            "expr": text,
            "left": x,
            "op": op,
            "right": list(y) if copy_right else y,
            "result": result(x, y),
            "param": param,
        }

    return record


def comparisons_closure(nodes: list[Node]) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    """env -> the trace records of several comparisons, in order (one call per rule).

    The shapes `fact op constant` and `fact in [list]` are filled in place, each from a
    record whose fixed keys (expression, operator, constant, param) are set once: copying
    it and setting the value and result costs less than building it; any other comparison
    uses its own :func:`comparison_closure`.
    """
    specs: list[tuple[Any, ...]] = []
    for node in nodes:
        left, right = (node.left, node.right) if isinstance(node, Cmp) else (None, None)
        if isinstance(node, Cmp) and _is_name(left) and _constant(right) is not None:  # type: ignore[arg-type]
            y = _constant(right)  # type: ignore[arg-type]
            param = right.name if isinstance(right, Name) else None
            fixed = _record(unparse(node), node.op, y, param)
            specs.append((0, left.name, fixed, y, _CMP[node.op]))  # type: ignore[union-attr]
        elif isinstance(node, In) and _is_name(node.item) and isinstance(node.container, ListLit):
            op = "not in" if node.negated else "in"
            values = node.container.values
            fixed = _record(unparse(node), op, None, None)
            specs.append((1, node.item.name, fixed, values, node.negated))  # type: ignore[attr-defined]
        else:
            specs.append((2, comparison_closure(node), None, None, None))
    frozen = tuple(specs)

    def records(env: Mapping[str, Any]) -> list[dict[str, Any]]:
        out = []
        get = env.get
        for shape, key, fixed, y, how in frozen:
            if shape == 2:
                out.append(key(env))
                continue
            x = get(key)
            rec = fixed.copy()
            rec["left"] = x
            if shape == 0:
                rec["result"] = None if x is None else how(x, y)
            else:
                rec["right"] = list(y)  # a copy: verdicts never share the program's lists
                rec["result"] = None if x is None else (x not in y) is how
            out.append(rec)
        return out

    return records


def _record(text: str, op: str, right: Any, param: str | None) -> dict[str, Any]:
    """A comparison record with its per-account keys empty, in the order records have."""
    return {"expr": text, "left": None, "op": op, "right": right, "result": None, "param": param}
