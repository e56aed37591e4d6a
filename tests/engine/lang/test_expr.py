"""The expression language: the whitelisted parser, the type checker, and hostile input.

Hostile expressions must be rejected when the ruleset loads, with a located diagnostic and
no side effect; anything that could exhaust the parser runs in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from builders import FIXTURES

import engine
from engine.lang import expr as E

FIXTURES = FIXTURES / "invalid"
BASE = (FIXTURES / "base.yaml").read_text(encoding="utf-8")
WHEN_SPEND = "    when: annual_spend >= min_spend"  # line 27, the expression starts at col 11

SYMBOLS = {
    "n": E.Symbol("fact", E.NUMBER),
    "m": E.Symbol("fact", E.NUMBER),
    "b": E.Symbol("fact", E.BOOL),
    "s": E.Symbol("fact", E.STRING),
    "e": E.Symbol("fact", E.Type("string", ("x", "y"))),
    "l": E.Symbol("fact", E.Type("list", ("a", "b"))),
    "p": E.Symbol("param", E.NUMBER, 10),
}


def load_with_when(expression: str) -> list[tuple[str, int, int]]:
    """(code, line, col) of every diagnostic when rule 1's `when` is `expression`."""
    quoted = json.dumps(expression)  # a YAML double-quoted scalar: col 11 is the quote
    text = BASE.replace(WHEN_SPEND, f"    when: {quoted}")
    with pytest.raises(engine.RulesetError) as info:
        engine.prepare("h.yaml", text).close()
    return [(d.code, d.line, d.col) for d in info.value.diagnostics]


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("marker_in_tmp_path", [True, False], ids=["tmp_path", "tmp-PWNED"])
def test_import_and_system_call_is_rejected_without_running(tmp_path, marker_in_tmp_path):
    marker = tmp_path / "PWNED" if marker_in_tmp_path else Path("/tmp/PWNED")
    existed = marker.exists()
    diags = load_with_when(f"__import__('os').system('touch {marker}')")
    assert diags == [("expr.disallowed", 27, 12)]
    assert marker.exists() == existed
    if not existed:
        assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "code", "col"),
    [
        ("().__class__", "expr.disallowed", 12),
        ("[].__class__.__bases__", "expr.disallowed", 12),
        ("__builtins__", "expr.disallowed", 12),
        ("lambda: 1", "expr.disallowed", 12),
        ("(x := 1)", "expr.disallowed", 13),
        ("[x for x in tags]", "expr.disallowed", 12),
        ("{x for x in tags}", "expr.disallowed", 12),
        ("any(x for x in tags)", "expr.unknown_function", 12),
        ("open('/etc/passwd')", "expr.unknown_function", 12),
        ("eval('1')", "expr.unknown_function", 12),
        ("f'{annual_spend}' == 'x'", "expr.disallowed", 12),
        ("annual_spend.real > 1", "expr.disallowed", 12),
        ("tags[0] == 'a'", "expr.disallowed", 12),
        ("{'a': 1} == 1", "expr.disallowed", 12),
        ("(1, 2) == 1", "expr.disallowed", 12),
        ("min(*tags) > 1", "expr.disallowed", 16),
        ("min(annual_spend, key=1) > 1", "expr.disallowed", 12),
        ("b'x' == 'x'", "expr.disallowed", 12),
        ("1j == 1", "expr.disallowed", 12),
        ("~years > 1", "expr.disallowed", 12),
        ("years % 2 == 0", "expr.disallowed", 12),
        ("years // 2 == 0", "expr.disallowed", 12),
        ("years << 2 == 0", "expr.disallowed", 12),
        ("1e999 > years", "expr.disallowed", 12),
        ("annual_spend > 1; 1", "expr.syntax", 28),
        ("yield 1", "expr.syntax", 12),
    ],
)
def test_hostile_expression_is_rejected_at_load_and_located(source, code, col):
    assert load_with_when(source) == [(code, 27, col)]


def test_ten_thousand_terms_are_too_large():
    source = " + ".join(["years"] * 10_000) + " > 1"
    assert load_with_when(source) == [("expr.too_large", 27, 12)]
    with pytest.raises(E.ExprError) as info:
        E.parse(source)
    assert info.value.code == "expr.too_large" and info.value.hint


def test_node_count_limit_below_the_size_limit():
    source = " + ".join(["n"] * 150) + " > 1"
    assert len(source) < E.MAX_SOURCE_CHARS
    with pytest.raises(E.ExprError) as info:
        E.parse(source)
    assert info.value.code == "expr.too_large"


DEEP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import engine
    base = Path(sys.argv[1]).read_text(encoding="utf-8")
    out = []
    for source in json.loads(sys.argv[2]):
        when = "    when: " + json.dumps(source)
        text = base.replace("    when: annual_spend >= min_spend", when)
        try:
            engine.prepare("deep.yaml", text).close()
            out.append(None)
        except engine.RulesetError as exc:
            out.append([[d.code, d.line] for d in exc.diagnostics])
    print(json.dumps(out))
    """
)


def test_deep_nesting_never_crashes_the_process():
    sources = [
        "(" * 5000 + "years" + ")" * 5000 + " > 1",  # over the size limit
        "(" * 990 + "years" + ")" * 990 + " > 1",  # under it: the tokenizer's own limit
        "-" * 1990 + "years > 1",
        "not " * 495 + "known(years)",
        "abs(" * 390 + "years" + ")" * 390 + " > 1",
        "[" * 990 + "]" * 990 + " == 1",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", DEEP_SCRIPT, str(FIXTURES / "base.yaml"), json.dumps(sources)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    for source, diags in zip(sources, results, strict=True):
        assert diags is not None, source[:20]
        assert len(diags) == 1 and diags[0][1] == 27, (source[:20], diags)
        assert diags[0][0] in ("expr.too_large", "expr.syntax"), (source[:20], diags)


def test_deeply_nested_yaml_is_a_located_error_not_a_crash():
    script = textwrap.dedent(
        """
        import engine
        try:
            engine.prepare("deep.yaml", "a: " + "[" * 600 + "]" * 600)
        except engine.RulesetError as exc:
            print(exc.diagnostics[0].code)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "yaml.too_deep"


# --------------------------------------------------------------------------- parser units


def test_parse_refuses_empty_and_blank():
    for source in ("", "   ", "\n"):
        with pytest.raises(E.ExprError) as info:
            E.parse(source)
        assert info.value.code == "expr.empty"


def test_parse_negative_literal_is_a_constant():
    node = E.parse("-3")
    assert isinstance(node, E.Const) and node.value == -3


def test_parse_chain_becomes_and_of_comparisons():
    node = E.parse("0 < n <= 5")
    assert isinstance(node, E.And)
    assert [c.op for c in node.items] == ["<", "<="]
    assert E.unparse(node) == "(0 < n and n <= 5)"


def test_parse_true_false_literals_and_in():
    node = E.parse("b == true or 'a' not in l")
    assert isinstance(node, E.Or)
    assert isinstance(node.items[0].right, E.Const) and node.items[0].right.value is True
    assert isinstance(node.items[1], E.In) and node.items[1].negated


def test_parse_joins_multiline_source():
    node = E.parse("n >\n   1")
    assert E.unparse(node) == "n > 1"


def test_parse_offset_points_at_the_offending_node():
    with pytest.raises(E.ExprError) as info:
        E.parse("n > 1 and m.real > 2")
    assert info.value.offset == 10


def test_list_literal_holds_literals_only():
    with pytest.raises(E.ExprError) as info:
        E.parse("e in [n, 'x']")
    assert info.value.code == "expr.disallowed"


# --------------------------------------------------------------------------- type checker units


@pytest.mark.parametrize(
    ("source", "want"),
    [
        ("n + m * 2 - -n / 3", E.NUMBER),
        ("n > p", E.BOOL),
        ("min(n, m, 3)", E.NUMBER),
        ("max(n, 1)", E.NUMBER),
        ("abs(n)", E.NUMBER),
        ("len(l)", E.NUMBER),
        ("count(l, ['a'])", E.NUMBER),
        ("at_least(1, b, n > 1)", E.BOOL),
        ("known(s)", E.BOOL),
        ("e in ['x']", E.BOOL),
        ("'a' in l", E.BOOL),
        ("s == 'anything'", E.BOOL),
        ("b != false", E.BOOL),
    ],
)
def test_check_infers_the_type(source, want):
    assert E.check(E.parse(source), SYMBOLS, want_bool=False) == want


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("n", "expr.type"),  # a condition must be a bool
        ("n + s > 1", "expr.type"),
        ("-s == 'x'", "expr.type"),
        ("s > 'a'", "expr.type"),
        ("b < true", "expr.type"),
        ("e == 'z'", "expr.type"),
        ("l == ['a']", "expr.type"),
        ("n in [1, 'a']", "expr.type"),
        ("n in ['a']", "expr.type"),
        ("n in l", "expr.type"),
        ("'c' in l", "expr.type"),
        ("s in s", "expr.type"),
        ("n and b", "expr.type"),
        ("not n", "expr.type"),
        ("count(l, ['z']) > 1", "expr.type"),
        ("min(n) > 1", "expr.call"),
        ("min(n, s) > 1", "expr.call"),
        ("abs(n, m) > 1", "expr.call"),
        ("len(n) > 1", "expr.call"),
        ("count(l, 'a') > 1", "expr.call"),
        ("known(1)", "expr.call"),
        ("at_least(n, b)", "expr.call"),
        ("at_least(3, b, b)", "expr.call"),
        ("at_least(0, b, b)", "expr.call"),
        ("at_least(1, n, b)", "expr.call"),
        ("at_least(1, b, b, b, b, b, b, b)", "expr.call"),
        ("zz > 1", "expr.unknown_name"),
        ("true and True", "expr.disallowed"),
    ],
)
def test_check_rejects(source, code):
    with pytest.raises(E.ExprError) as info:
        E.check(E.parse(source), SYMBOLS)
    assert info.value.code == code


def test_unknown_name_hint_suggests_the_close_name():
    symbols = {"annual_spend": E.Symbol("fact", E.NUMBER)}
    with pytest.raises(E.ExprError) as info:
        E.check(E.parse("anual_spend > 1"), symbols)
    assert info.value.hint == "did you mean `annual_spend`?"


def test_check_resolves_scopes_and_param_values():
    node = E.parse("n > p")
    E.check(node, SYMBOLS)
    names = {n.name: (n.scope, n.value) for n in E.names(node)}
    assert names == {"n": ("fact", None), "p": ("param", 10)}
