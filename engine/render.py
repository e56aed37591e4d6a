"""Message templates: `{name}` placeholders formatted by unit and language."""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_FORMATTER = string.Formatter()
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


def placeholders(template: str) -> list[tuple[str, str]]:
    """(name, format_spec) of every placeholder; raises ValueError on a malformed template."""
    out = []
    for _literal, field, spec, conversion in _FORMATTER.parse(template):
        if field is None:
            continue
        if conversion:
            raise ValueError(f"conversion `!{conversion}` is not supported")
        if not field.isidentifier():
            raise ValueError(f"placeholder `{{{field}}}` is not a plain name")
        if spec not in ("", "raw"):
            raise ValueError(f"format `:{spec}` is not supported (only `:raw`)")
        out.append((field, spec or ""))
    return out


def _group(n: float, decimals: int) -> str:
    text = f"{n:,.{decimals}f}"
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


def format_value(value: Any, unit: str | None, lang: str, currency: str = "CNY") -> str:
    """A value as a person reads it in `lang` ('en' or 'zh')."""
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
        if lang == "zh":
            suffix = CURRENCY_ZH.get(currency, currency)
            sign = "-" if value < 0 else ""
            # the largest unit the amount reaches; if rounding to 2 decimals makes it
            # 10,000 of that unit, the next one (99,999,999 reads 1亿元, not 10,000万元)
            a = abs(value)
            units = ((1.0, ""), (1e4, "万"), (1e8, "亿"), (1e12, "万亿"))
            i = max(k for k, (size, _u) in enumerate(units) if a >= size or k == 0)
            if i + 1 < len(units) and round(a / units[i][0], 2) >= 1e4:
                i += 1
            size, unit = units[i]
            return f"{sign}{_group(a / size, 2)}{unit}{suffix}"
        symbol = CURRENCY_SYMBOL.get(currency, currency + " ")
        sign = "-" if value < 0 else ""
        return f"{sign}{symbol}{_group(abs(value), 2)}"
    if unit == "percent":
        return f"{_group(value, 1)}%"
    if unit == "ratio":
        return f"{value:.2f}"
    return _number(value)


def render(
    template: str,
    values: Mapping[str, Any],
    units: Mapping[str, str | None],
    lang: str,
    currency: str = "CNY",
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    missing: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """Fill a template. Values with a label (enums, segments, stage...) print the label;
    an unknown value prints the fact's `missing` text, or unknown / 未知."""
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
        out.append(format_value(v, units.get(field), lang, currency))
    return "".join(out)


@lru_cache(maxsize=4096)
def _parsed(template: str) -> tuple[tuple[str, str | None, str], ...]:
    return tuple((lit, fld, spec or "") for lit, fld, spec, _c in _FORMATTER.parse(template))
