"""The impact report as text, Markdown (a pull-request comment) or JSON, and the CI gate."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .compare import num as _num


def exceeds(report: Mapping[str, Any], *, fail_on_change: bool, max_moved: int | None) -> bool:
    """Whether the CI gate fails: any verdict changed (with `fail_on_change`), or too many moved."""
    if fail_on_change and report["changed"] > 0:
        return True
    return max_moved is not None and report["qualification_moved"] > max_moved


# --------------------------------------------------------------------------- rendering


def render_json(report: Mapping[str, Any]) -> str:
    """The report as JSON (stable key order, UTF-8 text)."""
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_delta(x: float) -> str:
    return f"{x:+.2f}".rstrip("0").rstrip(".") if x else "0"


def _value(v: Any) -> str:
    if isinstance(v, Mapping) and set(v) == {"base", "head"}:
        return f"{_value(v['base'])} → {_value(v['head'])}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, float):
        return _num(v)
    return str(v)


def _param_line(p: Mapping[str, Any]) -> str:
    if p["change"] == "changed":
        return f"{p['name']} {_value(p.get('base'))} → {_value(p.get('head'))}"
    return f"{p['name']} ({p['change']})"


def _headline(report: Mapping[str, Any]) -> str:
    n, changed, moved = report["accounts"], report["changed"], report["qualification_moved"]
    if not changed:
        return f"no verdict changes across {_fmt_int(n)} accounts"
    pct = 100.0 * moved / n if n else 0.0
    return (
        f"{_fmt_int(changed)} of {_fmt_int(n)} accounts change verdict; "
        f"{_fmt_int(moved)} ({pct:.1f}%) change qualification"
    )


def _change_summary(ch: Mapping[str, Any]) -> list[str]:
    lines = []
    if ch["params_changed"]:
        lines.append("params changed: " + "; ".join(_param_line(p) for p in ch["params_changed"]))
    if ch["derived_changed"]:
        lines.append(
            "derived facts changed: " + ", ".join(d["name"] for d in ch["derived_changed"])
        )
    if ch["facts_changed"]:
        lines.append(
            "fact declarations changed: "
            + ", ".join(f"{f['name']} ({f['change']})" for f in ch["facts_changed"])
        )
    if ch["rules_added"]:
        lines.append("rules added: " + ", ".join(ch["rules_added"]))
    if ch["rules_removed"]:
        lines.append("rules removed: " + ", ".join(ch["rules_removed"]))
    for r in ch["rules_changed"]:
        why = ["edited"] if r["edited"] else []
        if r["reads_changed"]:
            why.append("reads " + ", ".join(r["reads_changed"]))
        lines.append(f"rule changed: {r['id']} ({'; '.join(why)})")
    dec = ch["decision"]
    if dec["edited"] or dec["reads_changed"]:
        why = ["edited"] if dec["edited"] else []
        if dec["reads_changed"]:
            why.append("reads " + ", ".join(dec["reads_changed"]))
        lines.append(f"decision steps changed ({'; '.join(why)})")
    if not lines:
        lines.append("no rule, param or decision changes")
    return lines


def _diffs(ch: Mapping[str, Any]) -> list[str]:
    out = [p["diff"] for p in ch["params_changed"] if p.get("diff")]
    out += [d["diff"] for d in ch["derived_changed"] if d.get("diff")]
    out += [f["diff"] for f in ch["facts_changed"] if f.get("diff")]
    out += [r["diff"] for r in ch["rules_changed"] if r.get("diff")]
    if ch["decision"].get("diff"):
        out.append(ch["decision"]["diff"])
    return out


def _account_label(a: Mapping[str, Any]) -> str:
    label = str(a.get("account_id"))
    if a.get("name"):
        label += f" {a['name']}"
    return label


def _account_change(a: Mapping[str, Any]) -> str:
    b, h = a["base"], a["head"]
    parts = []
    if b["qualification"] != h["qualification"]:
        parts.append(f"{b['qualification']} → {h['qualification']}")
    if a.get("score_delta"):
        parts.append(f"score {_num(b['score'])} → {_num(h['score'])}")
    bg, hg = b.get("guardrails") or {}, h.get("guardrails") or {}
    for rule in sorted(hg.keys() - bg.keys()):
        parts.append(f"+{rule} ({hg[rule]})")
    for rule in sorted(bg.keys() - hg.keys()):
        parts.append(f"-{rule}")
    for rule in sorted(bg.keys() & hg.keys()):
        if bg[rule] != hg[rule]:
            parts.append(f"{rule} {bg[rule]} → {hg[rule]}")
    if b.get("stage") != h.get("stage"):
        parts.append(f"stage {b.get('stage')} → {h.get('stage')}")
    bs, hs = set(b.get("segments") or ()), set(h.get("segments") or ())
    parts += [f"+segment {s}" for s in sorted(hs - bs)]
    parts += [f"-segment {s}" for s in sorted(bs - hs)]
    if b.get("error") or h.get("error"):
        parts.append(f"error: {b.get('error') or h.get('error')}")
    return "; ".join(parts)


def _facts_line(facts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in facts.items())


def _elapsed(report: Mapping[str, Any]) -> str:
    e = report["elapsed_seconds"]
    return (
        f"{e['total']:.2f} s (load {e['load']:.2f} s, evaluate {e['evaluate']:.2f} s, "
        f"{report['evaluations_per_second']:,.0f} evaluations/s"
        + (f" in {report['jobs']} processes)" if report.get("jobs", 1) > 1 else ")")
    )


def _side_text(side: Mapping[str, Any]) -> str:
    text = str(side["label"])
    if side.get("revision"):
        text += f" @ {side['revision'][:12]}"
    if side.get("version"):
        text += f" (version {side['version']})"
    return text


def _matrix_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    quals = report["qualifications"]
    header = ["base \\ head", *quals, "total"]
    rows = []
    for bq in quals:
        row = report["transitions"][bq]
        rows.append([bq, *(_fmt_int(row[hq]) for hq in quals), _fmt_int(sum(row.values()))])
    totals = [sum(report["transitions"][bq][hq] for bq in quals) for hq in quals]
    rows.append(["total", *(_fmt_int(t) for t in totals), _fmt_int(sum(totals))])
    return header, rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_text(report: Mapping[str, Any]) -> str:
    """A plain-text report for the terminal."""
    out = [
        f"kaq diff {report['ruleset']}: {_headline(report)}",
        f"base: {_side_text(report['base'])}",
        f"head: {_side_text(report['head'])}",
        "",
        *(f"  {line}" for line in _change_summary(report["changes"])),
        "",
        "Qualification transitions (rows: base, columns: head):",
        *_table(*_matrix_rows(report)),
    ]
    if report["guardrails"]:
        out += ["", "Guardrails:"]
        out += _table(
            ["rule", "newly firing", "cleared", "severity changed"],
            [
                [g["rule"], _fmt_int(g["newly_fired"]), _fmt_int(g["cleared"]),
                 _fmt_int(g["severity_changed"])]
                for g in report["guardrails"]
            ],
        )  # fmt: skip
    if report["segments"]:
        out += ["", "Segments:"]
        out += _table(
            ["segment", "added", "removed"],
            [
                [s["segment"], _fmt_int(s["added"]), _fmt_int(s["removed"])]
                for s in report["segments"]
            ],
        )
    if report["stages"]:
        out += ["", "Stage moves:"]
        out += [f"  {s['base']} → {s['head']}: {_fmt_int(s['count'])}" for s in report["stages"]]
    sc = report["scores"]
    out += ["", f"Score shifts: {_fmt_int(sc['changed'])} accounts"]
    if sc["changed"]:
        out[-1] += (
            f" (mean {_fmt_delta(sc['mean_delta'])}, min {_fmt_delta(sc['min_delta'])}, "
            f"max {_fmt_delta(sc['max_delta'])})"
        )
    if report["invalid"]["base"] or report["invalid"]["head"]:
        out.append(
            f"Invalid accounts: base {report['invalid']['base']}, head {report['invalid']['head']}"
        )
    if report["top"]:
        out += ["", f"Top {len(report['top'])} changed accounts:"]
        for a in report["top"]:
            out.append(f"  {_account_label(a)}: {_account_change(a)}")
            for r in a["rules"]:
                out.append(f"      {r['rule']}: {r['base']} → {r['head']}")
            if a["facts"]:
                out.append(f"      facts: {_facts_line(a['facts'])}")
    diffs = _diffs(report["changes"])
    if diffs:
        out += ["", "YAML changes:", *("".join(diffs).rstrip("\n").splitlines())]
    out += ["", f"elapsed: {_elapsed(report)}"]
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], align: str = "r") -> list[str]:
    sep = ["---"] + [("---:" if align == "r" else "---") for _ in header[1:]]
    return [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows),
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """A pull-request comment: headline first, then tables, details collapsed."""
    moved, changed = report["qualification_moved"], report["changed"]
    icon = "✅" if not changed else "⚠️" if moved else "ℹ️"
    out = [
        f"### {icon} kaq diff `{report['ruleset']}`: {_headline(report)}",
        "",
        f"Base **{_md_escape(_side_text(report['base']))}** → head "
        f"**{_md_escape(_side_text(report['head']))}**, "
        f"{_fmt_int(report['accounts'])} accounts, {_md_escape(_elapsed(report))}.",
        "",
        *(f"- {_md_escape(line)}" for line in _change_summary(report["changes"])),
        "",
    ]
    if changed:
        header, rows = _matrix_rows(report)
        quals = report["qualifications"]
        for r, bq in zip(rows, quals, strict=False):
            for j, hq in enumerate(quals, 1):
                if bq != hq and report["transitions"][bq][hq]:
                    r[j] = f"**{r[j]}**"
        out += [
            "**Qualification transitions** (rows: base, columns: head; moved counts in bold)",
            "",
            *_md_table([f"`{h}`" if h in quals else h for h in header],
                       [[f"`{r[0]}`" if r[0] in quals else r[0], *r[1:]] for r in rows]),
            "",
        ]  # fmt: skip
        if report["guardrails"]:
            out += [
                "**Guardrails**",
                "",
                *_md_table(
                    ["rule", "newly firing", "cleared", "severity changed"],
                    [
                        [f"`{g['rule']}`", _fmt_int(g["newly_fired"]), _fmt_int(g["cleared"]),
                         _fmt_int(g["severity_changed"])]
                        for g in report["guardrails"]
                    ],
                ),
                "",
            ]  # fmt: skip
        else:
            out += ["**Guardrails:** no finding newly fires or clears.", ""]
        sc = report["scores"]
        if sc["changed"]:
            score_row = [
                _fmt_int(sc["changed"]),
                _fmt_delta(sc["mean_delta"]),
                _fmt_delta(sc["min_delta"]),
                _fmt_delta(sc["max_delta"]),
            ]
            out += [
                "**Score shifts** (over the accounts whose score changed)",
                "",
                *_md_table(["accounts", "mean Δ", "min Δ", "max Δ"], [score_row]),
                "",
            ]
        else:
            out += ["**Scores:** unchanged for every account.", ""]
        extra = []
        if report["segments"]:
            extra += _md_table(
                ["segment", "added", "removed"],
                [[f"`{s['segment']}`", _fmt_int(s["added"]), _fmt_int(s["removed"])]
                 for s in report["segments"]],
            ) + [""]  # fmt: skip
        if report["stages"]:
            extra += _md_table(
                ["stage (base)", "stage (head)", "accounts"],
                [[str(s["base"]), str(s["head"]), _fmt_int(s["count"])] for s in report["stages"]],
            ) + [""]
        if report["invalid"]["base"] or report["invalid"]["head"]:
            extra += [
                f"Accounts rejected by the facts model: base {report['invalid']['base']}, "
                f"head {report['invalid']['head']}.",
                "",
            ]
        if extra:
            out += ["<details><summary>Segments and stages</summary>", "", *extra, "</details>", ""]
    if report["top"]:
        rows = []
        for a in report["top"]:
            moved_by = "<br>".join(f"`{r['rule']}`: {r['base']} → {r['head']}" for r in a["rules"])
            rows.append(
                [
                    f"`{a['account_id']}` {a.get('name') or ''}".strip(),
                    _account_change(a),
                    moved_by or "—",
                    _facts_line(a["facts"]) or "—",
                ]
            )
        out += [
            f"<details><summary>Top {len(report['top'])} changed accounts</summary>",
            "",
            *_md_table(["account", "change", "rules whose outcome changed", "facts"], rows, "l"),
            "",
            "</details>",
            "",
        ]
    diffs = _diffs(report["changes"])
    if diffs:
        out += [
            "<details><summary>Rule and param changes (YAML)</summary>",
            "",
            "```diff",
            *("".join(diffs).rstrip("\n").splitlines()),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)
