"""Message templates: `{name}` placeholders formatted by unit and language.

A value's unit word (a fact's `unit_word`: 次, 家, 套 / "unit") is written after it by
`{name:word}` in a template, and by `quantity` where no template is around the value (the
advice's "from 0 to 1"); a template that writes the word itself (「{x}次」) uses `{name}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.lang.templates import parsed as _parsed

#: lang -> (the word after 1, after any other number), as `UnitWord.forms` gives it
Word = Mapping[str, tuple[str, str]]

UNKNOWN = {"en": "unknown", "zh": "未知"}
CURRENCY_SYMBOL = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$"}
CURRENCY_ZH = {
    "CNY": "元",
    "USD": "美元",
    "EUR": "欧元",
    "GBP": "英镑",
    "JPY": "日元",
    "HKD": "港元",
}


def _group(n: float, decimals: int) -> str:
    if type(n) is int or n.is_integer():
        return f"{int(n):,}"
    text = f"{n:,.2f}" if decimals == 2 else f"{n:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _number(v: float) -> str:
    # thousands grouped alike for whole and fractional numbers: 1,500 and 5,840.7
    if isinstance(v, bool):
        return str(v).lower()
    if float(v).is_integer():
        return f"{int(v):,}"
    return _group(v, 2)


_ZH_UNITS = ((1.0, ""), (1e4, "万"), (1e8, "亿"), (1e12, "万亿"))


def _money_en(value: float, currency: str) -> str:
    symbol = CURRENCY_SYMBOL.get(currency, currency + " ")
    sign = "-" if value < 0 else ""
    a = abs(value)
    if type(a) is int:
        return f"{sign}{symbol}{a:,}"
    return f"{sign}{symbol}{_group(a, 2)}"


def _money_zh(value: float, currency: str) -> str:
    return _zh_amount(value, CURRENCY_ZH.get(currency, currency))


def _zh_amount(value: float, suffix: str) -> str:
    """An amount as Chinese writes it, in 万 and 亿 before its unit: 1.5万元, 50万套."""
    sign = "-" if value < 0 else ""
    # the largest unit the amount reaches; if rounding to 2 decimals makes it 10,000 of
    # that unit, the next one (99,999,999 reads 1亿元, not 10,000万元)
    a = abs(value)
    i = 3 if a >= 1e12 else 2 if a >= 1e8 else 1 if a >= 1e4 else 0
    if i < 3 and round(a / _ZH_UNITS[i][0], 2) >= 1e4:
        i += 1
    size, unit = _ZH_UNITS[i]
    if i == 0 and type(a) is int:
        return f"{sign}{a:,}{unit}{suffix}"
    return f"{sign}{_group(a / size, 2)}{unit}{suffix}"


def percentile(value: float, lang: str) -> str:
    """A rank among customers (0 = the top) as people say it: never "the top 100%"."""
    if value <= 0:
        return "排名最前" if lang == "zh" else "at the very top"
    if value <= 50:
        return f"前{_group(value, 1)}%" if lang == "zh" else f"in the top {_group(value, 1)}%"
    return "后半段" if lang == "zh" else "in the bottom half"


def format_value(
    value: Any, unit: str | None, lang: str, currency: str = "CNY", word: Word | None = None
) -> str:
    """A value as a person reads it in `lang` ('en' or 'zh'); a number followed by its unit
    `word` when one is given, except a count of 0, which reads "none" / 没有 (in a message
    sentence: "no channel", never "0 channels")."""
    forms = word.get(lang) if word is not None else None
    if forms is not None and is_number(value) and not (unit == "count" and value == 0):
        return quantity(value, unit, lang, currency, word)
    if value is None:
        return UNKNOWN[lang]
    if isinstance(value, bool):
        if lang == "zh":
            return "是" if value else "否"
        return "yes" if value else "no"
    if isinstance(value, list):
        items = [str(v) for v in value]
        if not items:
            return "无" if lang == "zh" else "none"
        if len(items) == 1:
            return items[0]
        if lang == "zh":
            return "、".join(items[:-1]) + "和" + items[-1]
        return ", ".join(items[:-1]) + " and " + items[-1]
    if isinstance(value, str):
        return value
    if unit == "money":
        return _money_zh(value, currency) if lang == "zh" else _money_en(value, currency)
    if unit == "percent":
        return f"{_group(value, 1)}%"
    if unit == "percentile":
        return percentile(value, lang)
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "years":
        if lang == "zh":
            return f"{_number(value)}年"
        return f"{_number(value)} year" + ("" if value == 1 else "s")
    if unit == "count" and value == 0:
        return "没有" if lang == "zh" else "none"  # "no channel", never "0 channels"
    if unit == "account":
        if lang == "zh":
            return f"{_number(value)}个客户"
        return f"{_number(value)} account" + ("" if value == 1 else "s")
    return _number(value)


def is_number(v: Any) -> bool:
    """A number, not a boolean (which Python counts as one)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def quantity(
    value: Any, unit: str | None, lang: str, currency: str = "CNY", word: Word | None = None
) -> str:
    """A number as a quantity, in figures and with its unit word: 「0次」「50万套」, "0",
    "1 unit", "1,200 units". Unlike `format_value`, a count of 0 is the figure: a change
    reads "from 0 to 1", never "from none to 1". Anything but a number: `format_value`."""
    if not is_number(value):
        return format_value(value, unit, lang, currency)
    forms = word.get(lang) if word is not None else None
    if forms is None:
        return _number(value) if unit == "count" else format_value(value, unit, lang, currency)
    if lang == "zh":
        return _zh_amount(value, forms[0])
    return f"{_number(value)} {forms[0] if abs(value) == 1 else forms[1]}"


def render(
    template: str,
    values: Mapping[str, Any],
    units: Mapping[str, str | None],
    lang: str,
    currency: str = "CNY",
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    missing: Mapping[str, Mapping[str, str]] | None = None,
    words: Mapping[str, Word] | None = None,
) -> str:
    """Fill a template. Values with a label (enums, segments, stage...) print the label;
    an unknown value prints the fact's `missing` text, or unknown / 未知; `{name:word}`
    writes the value's unit word after it (`words`: name -> `Word`)."""
    out = []
    for literal, field, spec in _parsed(template):
        out.append(literal)
        if field is None:
            continue
        v = values.get(field)
        if v is None and missing and field in missing:
            out.append(missing[field][lang])
            continue
        if spec == "raw":
            out.append(UNKNOWN[lang] if v is None else str(v))
            continue
        if labels and field in labels and v is not None:
            table = labels[field]
            if isinstance(v, list):
                v = [table[x][lang] if x in table else x for x in v]
            elif v in table:
                v = table[v][lang]
        word = words.get(field) if spec == "word" and words else None
        out.append(format_value(v, units.get(field), lang, currency, word))
    return "".join(out)


def compile_template(
    template: str,
    units: Mapping[str, str | None],
    lang: str,
    currency: str = "CNY",
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    missing: Mapping[str, Mapping[str, str]] | None = None,
    constants: Mapping[str, Any] | None = None,
    words: Mapping[str, Word] | None = None,
) -> Callable[[Mapping[str, Any]], str]:
    """`render` with everything but the values fixed: values -> text, same output.

    Placeholders named in `constants` (params) are rendered once, here, into the text.
    """
    pieces: list[tuple[str, str | None, bool, str | None, Any, str, Word | None]] = []
    carry = ""  # text rendered so far that precedes the next per-account placeholder
    for literal, field, spec in _parsed(template):
        if field is not None and constants is not None and field in constants:
            one = {field: constants[field]}
            carry += literal + render(
                f"{{{field}:{spec}}}" if spec else f"{{{field}}}",
                one,
                units,
                lang,
                currency,
                labels,
                missing,
                words,
            )
            continue
        literal, carry = carry + literal, ""
        if field is None:
            pieces.append((literal, None, False, None, None, "", None))
            continue
        miss = missing[field][lang] if missing and field in missing else UNKNOWN[lang]
        table = labels.get(field) if labels else None
        word = words.get(field) if spec == "word" and words else None
        pieces.append((literal, field, spec == "raw", units.get(field), table, miss, word))

    if carry:
        pieces.append((carry, None, False, None, None, "", None))
    numbers: dict[tuple[Any, ...], str] = {}

    def fill(values: Mapping[str, Any]) -> str:
        out = []
        for literal, field, raw, unit, table, miss, word in pieces:
            if literal:
                out.append(literal)
            if field is None:
                continue
            v = values.get(field)
            if v is None:
                out.append(miss)
            elif raw:
                out.append(str(v))
            elif type(v) is str and (table is None or v not in table):
                out.append(v)
            elif type(v) is int and unit is None and table is None and word is None:
                out.append(f"{v:,}")
            elif (t := type(v)) is int or t is float:
                # numbers recur across accounts (years, counts, percentages): formatted once
                # per field; 1 and 1.0 print alike here (only `:raw` tells them apart)
                key = (field, v, word is not None)
                text = numbers.get(key)
                if text is None:
                    u = table[v][lang] if table is not None and v in table else v
                    text = format_value(u, unit, lang, currency, word)
                    if len(numbers) >= 4096:
                        numbers.clear()
                    numbers[key] = text
                out.append(text)
            else:
                if table is not None:
                    if isinstance(v, list):
                        v = [table[x][lang] if x in table else x for x in v]
                    elif v in table:
                        v = table[v][lang]
                out.append(format_value(v, unit, lang, currency, word))
        return "".join(out)

    placed = [i for i, p in enumerate(pieces) if p[1] is not None]
    if len(placed) == 1:
        # one per-account value, most often the account's name: head + value + tail
        i = placed[0]
        field1, raw1, table1 = pieces[i][1], pieces[i][2], pieces[i][4]
        head = "".join(p[0] for p in pieces[: i + 1])
        tail = "".join(p[0] for p in pieces[i + 1 :])

        def fill_one(values: Mapping[str, Any]) -> str:
            v = values.get(field1)  # type: ignore[arg-type]
            if type(v) is str and (raw1 or table1 is None or v not in table1):
                return head + v + tail
            return fill(values)

        return fill_one
    return fill
