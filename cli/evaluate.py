"""`kaq evaluate FILE`: verdicts for the accounts of a .json, .jsonl or .csv file."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from cli._common import RULESETS_HELP, err_console, load_or_exit, pick
from engine.errors import FactsError, InternalError
from engine.tools.accounts import count_records, read_records

SEVERITY_STYLE = {"high": "bold red", "warning": "yellow", "info": "cyan"}
QUAL_STYLE = {
    "key_account": "bold green",
    "potential_key_account": "bold cyan",
    "not_key_account": "bold",
    "insufficient_data": "bold magenta",
}
PROGRESS_FROM = 200


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        file: Path = typer.Argument(..., help="accounts: .json (object or list), .jsonl or .csv"),
        ruleset: str = typer.Option("key-account", "--ruleset", help="ruleset name"),
        rulesets: Path = typer.Option(None, "--rulesets", help=RULESETS_HELP, show_default=False),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        lang: str = typer.Option("en", "--lang", help="message language for tables: en or zh"),
    ) -> None:
        """Evaluate account facts; exit 2 on bad input (naming the record and field)."""
        if fmt not in ("table", "json"):
            err_console.print(f"error: --format must be table or json, not `{fmt}`", markup=False)
            raise typer.Exit(2)
        if lang not in ("en", "zh"):
            err_console.print(f"error: --lang must be en or zh, not `{lang}`", markup=False)
            raise typer.Exit(2)
        if not file.is_file():
            err_console.print(f"error: {file}: no such file", markup=False)
            raise typer.Exit(2)
        rs = pick(load_or_exit(rulesets), ruleset)
        try:
            records = list(_evaluate_all(file, rs))
        except ValueError as exc:
            err_console.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from None
        whole = [(where, err) for where, _, err, file_level in records if file_level]
        if whole:
            for where, err in whole:
                sys.stderr.write(f"{where}: {err}\n")
            sys.stderr.write("the file was not evaluated\n")
            raise typer.Exit(2)
        verdicts = [v for _, v, _, _ in records if v is not None]
        bad = [(where, err) for where, _, err, _ in records if err is not None]
        if fmt == "json":
            single = len(records) == 1 and file.suffix.lower() == ".json" and not bad
            payload: Any = verdicts[0] if single and verdicts else verdicts
            sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        else:
            out = Console(highlight=False)
            for v in verdicts:
                out.print(_panel(v, lang, rs.labels))
        for where, err in bad:
            sys.stderr.write(f"{where}: {err}\n")  # one line each, never wrapped
        if bad:
            done = len(records) - len(bad)
            tail = f"; the other {done} were evaluated" if done else ""
            sys.stderr.write(f"{len(bad)} of {len(records)} record(s) rejected{tail}\n")
            raise typer.Exit(2)


def _evaluate_all(file: Path, rs: Any):
    total = count_records(file)
    show = total is not None and total >= PROGRESS_FROM and err_console.is_terminal
    with Progress(console=err_console, transient=True, disable=not show) as progress:
        task = progress.add_task("evaluating", total=total)
        for rec in read_records(file, rs):
            progress.advance(task)
            if rec.error is not None:
                yield rec.where, None, rec.error, rec.whole_file
                continue
            try:
                yield rec.where, rs.evaluate(rec.facts), None, False
            except FactsError as exc:
                where = rec.where
                if exc.account_id:
                    where += f" (account {exc.account_id})"
                yield (
                    where,
                    None,
                    "; ".join(
                        f"field `{'.'.join(map(str, e['loc'])) or '(record)'}`: {e['msg']}"
                        for e in exc.errors
                    ),
                    False,
                )
            except InternalError as exc:
                # valid facts kaq failed on: kaq's fault, not the record's; stop here
                sys.stderr.write(
                    f"{rec.where}: internal error: kaq failed on valid facts ({exc.code}: {exc}); "
                    "this is a defect of kaq or of the ruleset, not of the input\n"
                )
                raise typer.Exit(1) from None


def _label(labels: Mapping[str, Any], kind: str, value: Any, lang: str) -> str:
    """The ruleset's label for a vocabulary value, with the code beside it."""
    if value is None:
        return "未知" if lang == "zh" else "unknown"
    text = labels.get(kind, {}).get(value, {}).get(lang)
    return f"{text} ({value})" if text and text != value else str(value)


def _panel(v: dict[str, Any], lang: str, labels: Mapping[str, Any]) -> Panel:
    q = v["qualification"]
    head = Table.grid(padding=(0, 2))
    head.add_column(no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row(
        "qualification",
        f"[{QUAL_STYLE.get(q, 'bold')}]{_label(labels, 'qualification', q, lang)}[/]",
    )
    head.add_row("score", str(v["score"]))
    segs = [_label(labels, "segments", s, lang) for s in v["segments"]]
    head.add_row("segments", ", ".join(segs) or "-")
    head.add_row("stage", _label(labels, "stage", v["stage"], lang))
    if v.get("summary"):
        head.add_row("why", v["summary"][lang])
    if v["missing_facts"]:
        head.add_row("missing", ", ".join(v["missing_facts"]))
    parts: list[Any] = [head]
    crit = Table(title="criteria", title_justify="left", show_edge=False, expand=True)
    crit.add_column("rule", no_wrap=True)
    crit.add_column("outcome", no_wrap=True)
    crit.add_column("points", justify="right")
    crit.add_column("reason", overflow="fold")
    for c in v["criteria"]:
        crit.add_row(
            c["rule"], c["outcome"], f"{c['points']}/{c['max_points']}", c["message"][lang]
        )
    parts.append(crit)
    if v["guardrails"]:
        g = Table(title="findings", title_justify="left", show_edge=False, expand=True)
        g.add_column("severity", no_wrap=True)
        g.add_column("rule", no_wrap=True)
        g.add_column("finding and what to do", overflow="fold")
        for f in v["guardrails"]:
            text = f["message"][lang]
            if f.get("recommendation"):
                text += "\n→ " + f["recommendation"][lang]
            g.add_row(f"[{SEVERITY_STYLE[f['severity']]}]{f['severity']}[/]", f["rule"], text)
        parts.append(g)
    if v["recommendations"]:
        r = Table(
            title=f"playbook ({v['stage']})",
            title_justify="left",
            show_edge=False,
            show_header=False,
            expand=True,
        )
        r.add_column("item", overflow="fold")
        for item in v["recommendations"]:
            r.add_row("• " + item["message"][lang])
        parts.append(r)
    from rich.console import Group

    return Panel(Group(*parts), title=f"[bold]{v['account_id']}[/]", title_align="left")
