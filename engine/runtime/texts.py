"""A ruleset's texts: its message templates, compiled once and filled per account.

Params are rendered into the templates once. Filling a template is a pure function of the
template and the per-account values it names; accounts share many of those values (enums,
booleans, small counts), so a bounded memo keeps the texts already made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.lang.program import OUTCOME_VARS, Compiled, Program, Rule
from engine.lang.templates import placeholders
from engine.runtime.render import compile_template

TextFn = Callable[[Mapping[str, Any]], dict[str, str]]

MEMO_SIZE = 20_000
_TRIAL = 400  # renderings before a template's memo use is decided (a quarter must hit)

_OUTCOME_WORDS = {
    "met": ("met", "满足"),
    "partly_met": ("partly met", "部分满足"),
    "not_met": ("not met", "不满足"),
    "not_evaluable": ("not evaluable: facts missing", "信息不足，无法判断"),
    "fired": ("applies", "成立"),
}


class Texts:
    """The texts of one compiled ruleset, in both languages."""

    def __init__(self, compiled: Compiled):
        self._compiled = compiled
        self._fns: dict[int, TextFn] = {}
        self.memo: dict[tuple[Any, ...], tuple[str, str]] = {}

    def clear(self) -> None:
        """Forget the texts made so far (benchmarks measure accounts never seen before)."""
        self.memo.clear()

    def message(self, r: Rule, outcome: str, prog: Program) -> TextFn:
        """env -> the rule's message for `outcome` (a plain default where it has none)."""
        text = r.messages.get(outcome)
        if text is None:
            default = _default_message(r, outcome)
            return lambda env: dict(default)
        return self.fn(text, prog)

    def render(
        self, text: Mapping[str, str] | None, env: Mapping[str, Any], prog: Program
    ) -> dict[str, str] | None:
        """The text filled with `env`, or None for no text."""
        return None if text is None else self.fn(text, prog)(env)

    def fn(self, text: Mapping[str, str], prog: Program) -> TextFn:
        """env -> the text in both languages (one function per template, made once)."""
        f = self._fns.get(id(text))
        if f is None:
            f = self._fns[id(text)] = self._make(text, prog)
        return f

    @staticmethod
    def _may_be_list(name: str, prog: Program) -> bool:
        decl = prog.facts.get(name)
        if decl is not None:
            return decl.type == "list"
        if name in OUTCOME_VARS:
            return OUTCOME_VARS[name] == "list"
        return any(d.name == name and d.node.type.kind == "list" for d in prog.derived)

    def _make(self, text: Mapping[str, str], prog: Program) -> TextFn:
        """env -> the text in both languages, memoised where that pays.

        Values of one static type print alike whether `1` or `1.0`, except through `:raw`,
        so only templates with a `:raw` placeholder put the values' types into the key.
        A template whose texts rarely repeat (it names the account, or an amount) stops
        using the memo after a trial: its key would cost more than it saves.
        """
        c = self._compiled
        params = prog.params
        used = [(n, spec) for lang in ("en", "zh") for n, spec in placeholders(text[lang])]
        names = tuple(dict.fromkeys(n for n, _spec in used if n not in params))
        fixed = {n: params[n] for n, _spec in used if n in params}
        typed = any(spec == "raw" for _n, spec in used)
        # names that can hold a list (unhashable) go into the key as tuples
        listy = tuple(i for i, n in enumerate(names) if self._may_be_list(n, prog))
        args = (prog.units, c.doc.currency, c.labels, c.missing)
        words = prog.words
        fill_en = compile_template(
            text["en"], args[0], "en", *args[1:], constants=fixed, words=words
        )
        fill_zh = compile_template(
            text["zh"], args[0], "zh", *args[1:], constants=fixed, words=words
        )
        if not names:  # the same text for every account
            en, zh = fill_en({}), fill_zh({})
            return lambda env: {"en": en, "zh": zh}
        memo = self.memo
        tid = id(text)
        trial = [0, 0]  # calls and memo hits while deciding whether the memo pays
        direct = False

        def rendered(env: Mapping[str, Any]) -> dict[str, str]:
            nonlocal direct
            if direct:
                return {"en": fill_en(env), "zh": fill_zh(env)}
            vals = tuple(map(env.get, names))
            hashable = vals
            if listy:
                lv = list(vals)
                for i in listy:
                    if type(x := lv[i]) is list:
                        lv[i] = tuple(x)
                hashable = tuple(lv)
            key = (tid, hashable, tuple(map(type, vals))) if typed else (tid, hashable)
            try:
                hit = memo.get(key)
            except TypeError:  # a list where none was expected: render without the memo
                return {"en": fill_en(env), "zh": fill_zh(env)}
            if hit is None:
                hit = (fill_en(env), fill_zh(env))
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                memo[key] = hit
            elif trial[0] < _TRIAL:
                trial[1] += 1
            if trial[0] < _TRIAL:
                trial[0] += 1
                if trial[0] == _TRIAL and trial[1] < _TRIAL // 4:
                    direct = True
            return {"en": hit[0], "zh": hit[1]}

        return rendered


def _default_message(r: Rule, outcome: str) -> dict[str, str]:
    en, zh = _OUTCOME_WORDS.get(outcome, (outcome, outcome))
    label_en = r.decl.description.en if r.decl.description else r.id
    label_zh = r.decl.description.zh if r.decl.description else r.id
    return {"en": f"{label_en}: {en}.", "zh": f"{label_zh}：{zh}。"}
