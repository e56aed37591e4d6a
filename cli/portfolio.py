"""`kaq portfolio FILE`: the portfolio view (policy §7) of the accounts in a file.

It streams like `kaq evaluate`: each account is read, decided (no texts) and added to the
portfolio's running sums, which keep 13 bytes an account; a second pass over the file reads
only the accounts the findings name (the top accounts by profit and the largest one).
Output: a table a sales director reads (`--lang en|zh`), Markdown to paste into a report,
or the JSON of `POST /v1/portfolio/evaluate` without the per-account verdicts. Bad records
are named on standard error and exit 2, with no portfolio: a portfolio of only some of the
accounts would mislead.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from cli._common import RULESETS_HELP, err_console, load_or_exit, pick
from cli.output import OutputError, for_stdout
from cli.words import label, word
from engine.errors import FactsError
from engine.runtime.portfolio import Portfolio
from engine.runtime.render import format_value
from engine.tools.accounts import SUFFIXES, count_records, read_records

FORMATS = ("table", "json", "markdown")
PROGRESS_FROM = 200
LISTED = 10  # top accounts and unqualified accounts listed in a table or in Markdown


def register(app: typer.Typer) -> None:
    @app.command()
    def portfolio(
        file: Path = typer.Argument(..., help="accounts: .json (object or list), .jsonl or .csv"),
        ruleset: str = typer.Option("key-account", "--ruleset", help="ruleset name"),
        rulesets: Path = typer.Option(None, "--rulesets", help=RULESETS_HELP, show_default=False),
        fmt: str = typer.Option("table", "--format", help="table, json or markdown"),
        lang: str = typer.Option("en", "--lang", help="language of the table or Markdown"),
        smb_dropped: float = typer.Option(
            None,
            "--smb-dropped",
            help="share of SMB accounts dropped in the last 12 months, in percent",
            show_default=False,
        ),
    ) -> None:
        """The portfolio view of the accounts in FILE; exit 2 on bad input."""
        fail = _fail
        if fmt not in FORMATS:
            fail(f"--format must be one of {', '.join(FORMATS)}, not `{fmt}`")
        if lang not in ("en", "zh"):
            fail(f"--lang must be en or zh, not `{lang}`")
        if not file.is_file():
            fail(f"{file}: no such file")
        if file.suffix.lower() not in SUFFIXES:
            fail(f"{file}: unsupported file type `{file.suffix}` (use .json, .jsonl or .csv)")
        folder = load_or_exit(rulesets)
        rs = pick(folder, ruleset)
        port = rs.compiled.doc.portfolio
        if port is None:
            fail(f"ruleset {rs.name} has no portfolio section")
        inputs: dict[str, Any] = {}
        if smb_dropped is not None:
            key = port.smb_dropped
            if key is None:
                fail(f"ruleset {rs.name} names no `portfolio.smb_dropped` input")
            inputs[key] = smb_dropped
        try:
            builder = Portfolio(rs, inputs)
        except FactsError as exc:
            fail("; ".join(f"--smb-dropped: {e['msg']}" for e in exc.errors))
        code = run(file, rs, builder, fmt, lang)
        for other in folder.values():
            other.close()
        raise typer.Exit(code)


def _fail(message: str) -> NoReturn:
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(2)


def run(file: Path, rs: Any, builder: Portfolio, fmt: str, lang: str) -> int:
    """Build the portfolio of `file` and write it; the exit status."""
    total = count_records(file)
    show = total is not None and total >= PROGRESS_FROM and err_console.is_terminal
    rejected = n = 0
    with Progress(console=err_console, transient=True, disable=not show) as progress:
        task = progress.add_task("deciding", total=total)
        for where, facts, error in _validated(file, rs):
            progress.advance(task)
            if error is not None:
                sys.stderr.write(f"{where}: {error}\n")
                rejected += 1
                if where.endswith("(file)"):
                    return 2
                continue
            n += 1
            if not rejected:
                d = rs.decide_valid(facts)
                builder.add(facts, d.qualification, d.segments, d.stage)
    if rejected:
        sys.stderr.write(
            f"{rejected} of {rejected + n} record(s) rejected; the portfolio was not computed\n"
        )
        return 2
    report = builder.finish(lambda positions: _again(file, rs, positions))
    if fmt == "json":
        data = orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"
    elif fmt == "markdown":
        data = markdown(report, rs.labels, lang).encode("utf-8")
    else:
        data = table(report, rs.labels, lang).encode("utf-8")
    out = for_stdout()
    try:
        out.write(data)
        out.flush()
    except OutputError as exc:
        sys.stderr.write(f"kaq portfolio: output incomplete: {exc}\n")
        return 1
    return 0


def _validated(file: Path, rs: Any) -> Iterator[tuple[str, Any, str | None]]:
    """(where, validated facts, None) or (where, None, the reason) per record."""
    for rec in read_records(file, rs.fact_decls):
        if rec.error is not None:
            yield (rec.where + (" (file)" if rec.whole_file else ""), None, rec.error)
            continue
        try:
            yield rec.where, rs.validate_facts(rec.facts), None
        except FactsError as exc:
            place = f"{rec.where} (account {exc.account_id})" if exc.account_id else rec.where
            reason = "; ".join(
                f"field `{'.'.join(map(str, e['loc'])) or '(record)'}`: {e['msg']}"
                for e in exc.errors
            )
            yield place, None, reason


def _again(
    file: Path, rs: Any, positions: Sequence[int]
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The second pass: the validated facts of the accounts at these positions."""
    wanted = sorted(positions)
    k = 0
    for i, (_where, facts, _error) in enumerate(_validated(file, rs)):
        if k == len(wanted):
            return
        if i == wanted[k]:
            yield i, facts
            k += 1


# -- words


_WORDS: dict[str, tuple[str, str]] = {
    "title": ("Portfolio", "客户组合"),
    "accounts": ("Accounts", "客户数"),
    "revenue": ("Revenue", "收入"),
    "profit": ("Profit", "利润"),
    "revenue_share": ("Share of revenue", "收入占比"),
    "profit_share": ("Share of known profit", "占已知利润"),
    "all": ("All accounts", "全部客户"),
    "by_q": ("By qualification", "按结论"),
    "top": ("The accounts that bring most of the profit", "贡献利润最多的客户"),
    "largest": ("Largest account by revenue", "收入最大的客户"),
    "unqualified": ("Top-profit accounts that are not key accounts", "利润靠前却不是大客户的客户"),
    "first_step": ("What it would take first", "第一步"),
    "no_path": (
        "no path of at most 2 changes: review the account",
        "两项以内的改变都不够，需要整体评估",
    ),
    "more": ("and {n} more (in --format json)", "另有{n}个（见 --format json）"),
    "account": ("Account", "客户"),
    "rank": ("#", "排名"),
    "of_posted": ("of the revenue posted here", "占本次所列客户收入"),
    "what_to_do": ("What to do", "对策"),
    "no_findings": (
        "None: the portfolio trips none of the ruleset's thresholds.",
        "没有：各项组合指标都在规则的范围内。",
    ),
    "no_profit": (
        "No account has a known profit (yearly spend and gross margin).",
        "没有客户同时有年采购额和毛利率，利润无从计算。",
    ),
}


def _w(key: str, lang: str) -> str:
    if key in _WORDS:
        en, zh = _WORDS[key]
        return zh if lang == "zh" else en
    return word(key, lang)


def _money(v: Any, lang: str, currency: str) -> str:
    return "–" if v is None else format_value(v, "money", lang, currency)


def _pct(v: Any, lang: str) -> str:
    return "–" if v is None else format_value(v, "percent", lang)


def _count(n: int, lang: str) -> str:
    return format_value(n, "account", lang)


def _n(n: int) -> str:
    return f"{n:,}"  # in a column headed "Accounts"


def _who(row: Mapping[str, Any], lang: str) -> str:
    name = row.get("account_name")
    if not name:
        return str(row["account_id"])
    return f"{name}（{row['account_id']}）" if lang == "zh" else f"{name} ({row['account_id']})"


def _sections(report: Mapping[str, Any], labels: Mapping[str, Any], lang: str) -> list:
    """(title, header, rows) and (title, text) pieces, shared by the table and Markdown."""
    t = report["totals"]
    cur = t["currency"]
    out: list[tuple[Any, ...]] = []
    rows = [
        [
            _w("all", lang),
            _n(t["accounts"]),
            _money(t["revenue"], lang, cur),
            _pct(100 if t["revenue"] else None, lang),
            _money(t["profit"], lang, cur),
            _pct(100 if t["profit"] else None, lang),
        ]
    ]
    for q, row in t["qualification"].items():
        rows.append(
            [
                label(labels, "qualification", q, lang),
                _n(row["accounts"]),
                _money(row["revenue"], lang, cur),
                _pct(row["share_of_posted_revenue_pct"], lang),
                _money(row["profit"], lang, cur),
                _pct(row["share_of_known_profit_pct"], lang),
            ]
        )
    header = ["qualification", "accounts", "revenue", "revenue_share", "profit", "profit_share"]
    out.append(("table", _w("by_q", lang), [_w(h, lang) for h in header], rows))
    findings = [
        [
            word(f["severity"], lang),
            f["message"][lang]
            + (
                ("\n→" if lang == "zh" else "\n→ ") + f["recommendation"][lang]
                if f.get("recommendation")
                else ""
            ),
        ]
        for f in report["findings"]
    ]
    if findings:
        head = [word("severity", lang), word("finding", lang)]
        out.append(("table", word("findings", lang), head, findings))
    else:
        out.append(("text", word("findings", lang), _w("no_findings", lang)))
    top = report["top_accounts"]
    rows = [
        [
            str(k),
            _who(r, lang),
            label(labels, "qualification", r["qualification"], lang),
            _money(r["profit"], lang, cur),
            _pct(r["share_of_known_profit_pct"], lang),
        ]
        for k, r in enumerate(top[:LISTED], 1)
    ]
    header = ["rank", "account", "qualification", "profit", "profit_share"]
    more = _w("more", lang).format(n=f"{len(top) - LISTED:,}") if len(top) > LISTED else None
    if rows:
        out.append(("table", _w("top", lang), [_w(h, lang) for h in header], rows, more))
    else:
        out.append(("text", _w("top", lang), _w("no_profit", lang)))
    unq: list[dict[str, Any]] = next(
        (f["facts"]["accounts"] for f in report["findings"] if "accounts" in f["facts"]), []
    )
    if unq:
        rows = [
            [
                _who(r, lang),
                label(labels, "qualification", r["qualification"], lang),
                r["first_step"]["message"][lang] if r["first_step"] else _w("no_path", lang),
            ]
            for r in unq[:LISTED]
        ]
        header = ["account", "qualification", "first_step"]
        more = _w("more", lang).format(n=f"{len(unq) - LISTED:,}") if len(unq) > LISTED else None
        out.append(("table", _w("unqualified", lang), [_w(h, lang) for h in header], rows, more))
    big = report["largest_account"]
    if big is not None:
        text = (
            f"{_who(big, lang)}, {label(labels, 'qualification', big['qualification'], lang)}: "
            f"{_money(big['revenue'], lang, cur)}, "
            f"{_pct(big['share_of_posted_revenue_pct'], lang)} {_w('of_posted', lang)}"
        )
        if lang == "zh":
            q = label(labels, "qualification", big["qualification"], lang)
            text = (
                f"{_who(big, lang)}（{q}）："
                f"{_money(big['revenue'], lang, cur)}，{_w('of_posted', lang)}"
                f"{_pct(big['share_of_posted_revenue_pct'], lang)}"
            )
        out.append(("text", _w("largest", lang), text))
    return out


def table(report: Mapping[str, Any], labels: Mapping[str, Any], lang: str) -> str:
    """The portfolio as a sales director reads it in a terminal."""
    from cli.evaluate import _width

    parts: list[Any] = []
    for piece in _sections(report, labels, lang):
        if piece[0] == "text":
            parts.append(f"[bold]{escape(piece[1])}[/]")
            parts.append(escape(piece[2]))
            continue
        title, header, rows = piece[1], piece[2], piece[3]
        t = Table(title=title, title_justify="left", title_style="bold", expand=False)
        for i, h in enumerate(header):
            numeric = bool(i) and _numeric(rows, i)
            t.add_column(
                h, overflow="fold", justify="right" if numeric else "left", no_wrap=numeric
            )
        for row in rows:
            t.add_row(*map(escape, row))
        parts.append(t)
        if len(piece) > 4 and piece[4]:
            parts.append(escape(piece[4]))
    buf = io.StringIO()
    console = Console(file=buf, highlight=False, force_terminal=False, width=_width())
    colon = "：" if lang == "zh" else ": "
    title = f"{_w('title', lang)}{colon}{_count(report['totals']['accounts'], lang)}"
    console.print(Panel(Group(*parts), title=title, title_align="left"))
    return buf.getvalue()


def _numeric(rows: list[list[str]], i: int) -> bool:
    return bool(rows) and all(r[i][:1].isdigit() or r[i][:1] in "¥$€£-–" for r in rows)


def markdown(report: Mapping[str, Any], labels: Mapping[str, Any], lang: str) -> str:
    """The portfolio as Markdown a sales director pastes into a report."""
    colon = "：" if lang == "zh" else ": "
    lines = [f"## {_w('title', lang)}{colon}{_count(report['totals']['accounts'], lang)}", ""]
    for piece in _sections(report, labels, lang):
        lines += [f"### {piece[1]}", ""]
        if piece[0] == "text":
            lines += [_md(piece[2]), ""]
            continue
        header, rows = piece[2], piece[3]
        lines.append("| " + " | ".join(header) + " |")
        rule = ["---:" if i and _numeric(rows, i) else "---" for i in range(len(header))]
        lines.append("| " + " | ".join(rule) + " |")
        for row in rows:
            lines.append("| " + " | ".join(_md(c) for c in row) + " |")
        if len(piece) > 4 and piece[4]:
            lines += ["", _md(piece[4])]
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")
