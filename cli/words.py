"""The command line's own words, in English and Chinese (the ruleset's words are its own).

Headers, outcomes and severities as a salesperson reads them: `kaq evaluate --lang zh` is
Chinese throughout, `--lang en` has no code in snake_case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WORDS: dict[str, tuple[str, str]] = {
    "qualification": ("Qualification", "结论"),
    "score": ("Score", "得分"),
    "points": ("points", "分"),
    "points_header": ("Points", "得分"),
    "segments": ("Kind of customer", "客户类型"),
    "stage": ("Relationship stage", "关系阶段"),
    "why": ("Why", "依据"),
    "next": ("Next actions", "下一步"),
    "take": ("What it would take", "怎样才能更进一步"),
    "missing": ("Missing facts", "缺少的信息"),
    "decisive": ("of which decide it", "其中决定结论的"),
    "criteria": ("Criteria", "评估指标"),
    "criterion": ("Criterion", "指标"),
    "outcome": ("Outcome", "结果"),
    "reason": ("Reason", "说明"),
    "findings": ("Findings", "发现的问题"),
    "severity": ("Severity", "级别"),
    "finding": ("Finding and what to do", "问题与对策"),
    "playbook": ("Playbook", "本阶段打法"),
    "advice": ("Advice", "建议"),
    "none": ("none", "无"),
    "unknown": ("unknown", "未知"),
    "account": ("Account", "客户"),
    "company": ("for sales management", "公司层面"),
    # criterion outcomes
    "met": ("met", "达到"),
    "partly_met": ("partly met", "部分达到"),
    "not_met": ("not met", "未达到"),
    "not_evaluable": ("not known yet", "缺数据"),
    # severities
    "high": ("high", "高"),
    "warning": ("warning", "预警"),
    "info": ("note", "提示"),
}


def word(key: str, lang: str) -> str:
    """One of the command line's words in `lang`."""
    en, zh = WORDS.get(key, (key, key))
    return zh if lang == "zh" else en


def label(labels: Mapping[str, Any], kind: str, value: Any, lang: str) -> str:
    """The ruleset's label of a vocabulary value (qualification, segment, stage...)."""
    if value is None:
        return word("unknown", lang)
    text = labels.get(kind, {}).get(value, {}).get(lang)
    return str(text) if text else str(value).replace("_", " ")
