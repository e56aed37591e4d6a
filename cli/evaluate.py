"""`kaq evaluate FILE`: verdicts for the accounts of a .json, .jsonl or .csv file.

It streams: each account is read, decided and written before the next (JSON Lines, a JSON
array written piece by piece, or a table), so memory does not grow with the number of
accounts; `--jobs N` spreads the work over N processes and keeps the input order. Every
byte of the output is checked (`cli/output.py`): an output that could not be written whole
exits 1 and says so. Bad records are named on standard error (`file:line: field ...`) and
exit 2 once the others are done; a failure inside kaq stops at once and exits 1.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from cli._common import RULESETS_HELP, err_console, load_or_exit, pick
from cli.output import Output, OutputError, for_stdout
from cli.words import label, word
from engine.errors import FactsError, InternalError
from engine.runtime.prepared import VIEWS
from engine.tools.accounts import count_records, json_shape, read_records
from engine.tools.parallel import ordered

FORMATS = ("table", "json", "jsonl")
SEVERITY_STYLE = {"high": "bold red", "warning": "yellow", "info": "cyan"}
PROGRESS_FROM = 200

# one worker's state: the prepared ruleset and what to write (set by _init)
_STATE: dict[str, Any] = {}


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        file: Path = typer.Argument(..., help="accounts: .json (object or list), .jsonl or .csv"),
        ruleset: str = typer.Option("key-account", "--ruleset", help="ruleset name"),
        rulesets: Path = typer.Option(None, "--rulesets", help=RULESETS_HELP, show_default=False),
        fmt: str = typer.Option("table", "--format", help="table, json or jsonl"),
        view: str = typer.Option("full", "--view", help="full, summary or decision"),
        lang: str = typer.Option("en", "--lang", help="language of tables: en or zh"),
        jobs: int = typer.Option(1, "--jobs", min=1, help="worker processes (order is kept)"),
    ) -> None:
        """Evaluate account facts; exit 2 on bad input (naming the record and field)."""
        for name, value, allowed in (("--format", fmt, FORMATS), ("--view", view, VIEWS)):
            if value not in allowed:
                err_console.print(
                    f"error: {name} must be one of {', '.join(allowed)}, not `{value}`",
                    markup=False,
                )
                raise typer.Exit(2)
        if lang not in ("en", "zh"):
            err_console.print(f"error: --lang must be en or zh, not `{lang}`", markup=False)
            raise typer.Exit(2)
        if not file.is_file():
            err_console.print(f"error: {file}: no such file", markup=False)
            raise typer.Exit(2)
        if file.suffix.lower() not in (".json", ".jsonl", ".ndjson", ".csv"):
            err_console.print(
                f"error: {file}: unsupported file type `{file.suffix}` (use .json, .jsonl or .csv)",
                markup=False,
            )
            raise typer.Exit(2)
        folder = load_or_exit(rulesets)
        rs = pick(folder, ruleset)
        source = rs.path.parent if rs.path is not None else None
        single = fmt != "table" and file.suffix.lower() == ".json" and json_shape(file) == "object"
        code = run(file, rs, source, fmt, view, lang, jobs, single, for_stdout())
        for other in folder.values():
            other.close()
        raise typer.Exit(code)


def run(
    file: Path,
    rs: Any,
    folder: Path | None,
    fmt: str,
    view: str,
    lang: str,
    jobs: int,
    single: bool,
    out: Output,
) -> int:
    """Evaluate and write every record of `file`; the exit status."""
    total = count_records(file)
    show = total is not None and total >= PROGRESS_FROM and err_console.is_terminal
    records = read_records(file, rs.fact_decls)
    rejected = evaluated = 0
    first = True
    init = (str(folder) if folder is not None else None, rs.name, fmt, view, lang)
    if jobs > 1 and folder is None:
        jobs = 1  # a ruleset given as text only lives in this process
    try:
        if fmt == "json" and not single:
            out.write(b"[")
        with Progress(console=err_console, transient=True, disable=not show) as progress:
            task = progress.add_task("evaluating", total=total)
            if jobs <= 1:
                _STATE.update(rs=rs, fmt=fmt, view=view, lang=lang)
                results = ordered(_work, _items(records), jobs=1, initializer=_noop)
            else:
                results = ordered(
                    _work, _items(records), jobs=jobs, initializer=_init, initargs=init
                )
            for chunk in results:
                for where, kind, payload in chunk:
                    progress.advance(task)
                    if kind == "file":
                        sys.stderr.write(f"{where}: {payload}\nthe file was not evaluated\n")
                        return 2
                    if kind == "bad":
                        sys.stderr.write(f"{where}: {payload}\n")  # one line each, never wrapped
                        rejected += 1
                        continue
                    if kind == "internal":
                        sys.stderr.write(
                            f"{where}: internal error: kaq failed on valid facts ({payload}); "
                            "this is a defect of kaq or of the ruleset, not of the input\n"
                        )
                        out.flush()
                        return 1
                    evaluated += 1
                    if fmt == "json" and not single:
                        out.write((b"\n" if first else b",\n") + payload)
                    elif fmt == "table" and view == "decision":
                        if first:
                            out.write(_line_header(lang))
                        decision, name = payload
                        out.write(_line(decision, name, rs.labels, lang))
                    elif fmt == "table":
                        verdict, name = payload
                        out.write(_table(verdict, name, rs.labels, lang, view).encode("utf-8"))
                    else:
                        out.write(payload + b"\n")
                    first = False
        if fmt == "json" and not single:
            out.write(b"\n]\n" if evaluated else b"]\n")
        elif fmt == "json" and single and evaluated == 0:
            out.write(b"null\n")
        out.flush()
    except OutputError as exc:
        sys.stderr.write(f"kaq evaluate: output incomplete after {evaluated:,} verdicts: {exc}\n")
        return 1
    if rejected:
        tail = f"; the other {evaluated} were evaluated" if evaluated else ""
        sys.stderr.write(f"{rejected} of {rejected + evaluated} record(s) rejected{tail}\n")
        return 2
    return 0


def _items(records: Iterator[Any]) -> Iterator[tuple[str, Any, str | None, bool]]:
    for rec in records:
        yield (rec.where, rec.facts, rec.error, rec.whole_file)


def _noop() -> None:
    return None


def _init(folder: str | None, name: str, fmt: str, view: str, lang: str) -> None:
    """A worker process prepares its own ruleset (durable_rules state is per process)."""
    from engine.runtime.loader import load_rulesets

    sets = load_rulesets(Path(folder)) if folder else {}
    _STATE.update(rs=sets[name], fmt=fmt, view=view, lang=lang)


def _work(chunk: list[tuple[str, Any, str | None, bool]]) -> list[tuple[str, str, Any]]:
    """(where, kind, payload) per record: ok (JSON bytes, or the verdict for a table), bad
    (the reason), internal (the error), file (the file cannot be read)."""
    rs, fmt, view = _STATE["rs"], _STATE["fmt"], _STATE["view"]
    out: list[tuple[str, str, Any]] = []
    for where, facts, error, whole_file in chunk:
        if error is not None:
            out.append((where, "file" if whole_file else "bad", error))
            continue
        try:
            decision = rs.decide(facts)
            verdict = (
                None
                if fmt == "table" and view == "decision"
                else rs.view(decision, "full" if fmt == "table" else view)
            )
        except FactsError as exc:
            place = f"{where} (account {exc.account_id})" if exc.account_id else where
            reason = "; ".join(
                f"field `{'.'.join(map(str, e['loc'])) or '(record)'}`: {e['msg']}"
                for e in exc.errors
            )
            out.append((place, "bad", reason))
            continue
        except InternalError as exc:
            out.append((where, "internal", f"{exc.code}: {exc}"))
            continue
        if fmt == "table":
            out.append(
                (
                    where,
                    "ok",
                    (verdict if view != "decision" else decision.to_dict(), facts.get("name")),
                )
            )
        elif fmt == "json":
            out.append((where, "ok", orjson.dumps(verdict, option=orjson.OPT_INDENT_2)))
        else:
            out.append((where, "ok", orjson.dumps(verdict)))
    return out


# --------------------------------------------------------------------------- the table


def _line_header(lang: str) -> bytes:
    cols = [word(k, lang) for k in ("account", "qualification", "score", "segments", "stage")]
    return ("\t".join(cols) + "\n").encode("utf-8")


def _line(d: dict[str, Any], name: Any, labels: Mapping[str, Any], lang: str) -> bytes:
    """The decision view as a table: one tab-separated line per account (no text built)."""
    sep = "、" if lang == "zh" else ", "
    who = f"{d['account_id']} {name}" if name else str(d["account_id"])
    cells = [
        who,
        label(labels, "qualification", d["qualification"], lang),
        str(d["score"]),
        sep.join(label(labels, "segments", s, lang) for s in d["segments"]) or word("none", lang),
        label(labels, "stage", d["stage"], lang),
    ]
    return ("\t".join(cells) + "\n").encode("utf-8")


def _table(v: dict[str, Any], name: Any, labels: Mapping[str, Any], lang: str, view: str) -> str:
    """One account as a salesperson reads it: the verdict, why, what to do next and what
    it would take first; the details after."""
    buf = io.StringIO()
    console = Console(file=buf, highlight=False, force_terminal=False, width=_width())
    console.print(_panel(v, name, labels, lang, detailed=view != "decision"))
    return buf.getvalue()


def _width() -> int:
    import os

    try:
        return max(60, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 100


def _panel(
    v: dict[str, Any], name: Any, labels: Mapping[str, Any], lang: str, detailed: bool
) -> Panel:
    w = lambda key: word(key, lang)  # noqa: E731
    q = v["qualification"]
    head = Table.grid(padding=(0, 2))
    head.add_column(no_wrap=True, style="bold")
    head.add_column(overflow="fold")
    head.add_row(w("qualification"), f"[bold]{label(labels, 'qualification', q, lang)}[/]")
    head.add_row(w("score"), f"{v['score']} {w('points')}")
    segs = [label(labels, "segments", s, lang) for s in v["segments"]]
    head.add_row(w("segments"), ("、" if lang == "zh" else ", ").join(segs) or w("none"))
    head.add_row(w("stage"), label(labels, "stage", v["stage"], lang))
    if v.get("summary"):
        head.add_row(w("why"), v["summary"][lang])
    parts: list[Any] = [head]
    # the first path up is one of the next actions; it is listed with the paths below
    actions = [a for a in v.get("next_actions", ()) if a["rule"] != "advice.what_it_would_take"]
    if actions:
        parts.append(_list(w("next"), [a["message"][lang] for a in actions]))
    if v.get("what_it_would_take"):
        parts.append(_list(w("take"), [p["message"][lang] for p in v["what_it_would_take"]]))
    if v["missing_facts"]:
        names = [_fact(labels, f, lang) for f in v["missing_facts"]]
        text = ("、" if lang == "zh" else ", ").join(names)
        decisive = [_fact(labels, f, lang) for f in v.get("decisive_missing_facts", ())]
        if decisive:
            sep = "、" if lang == "zh" else ", "
            if lang == "zh":
                text += f"（{w('decisive')}：{sep.join(decisive)}）"
            else:
                text += f" ({w('decisive')}: {sep.join(decisive)})"
        parts.append(_list(w("missing"), [text]))
    if detailed:
        crit = Table(title=w("criteria"), title_justify="left", show_edge=False, expand=True)
        crit.add_column(w("criterion"), no_wrap=True)
        crit.add_column(w("outcome"), no_wrap=True)
        crit.add_column(w("points_header"), justify="right")
        crit.add_column(w("reason"), overflow="fold")
        for c in v["criteria"]:
            crit.add_row(
                _rule(labels, c["rule"], lang),
                w(c["outcome"]),
                f"{c['points']}/{c['max_points']}",
                c["message"][lang],
            )
        parts.append(crit)
        if v["guardrails"]:
            g = Table(title=w("findings"), title_justify="left", show_edge=False, expand=True)
            g.add_column(w("severity"), no_wrap=True)
            g.add_column(w("finding"), overflow="fold")
            for f in v["guardrails"]:
                text = f["message"][lang]
                if f.get("recommendation"):
                    # Chinese has no space to break at: "→ " would leave the arrow alone
                    arrow = "\n→" if lang == "zh" else "\n→ "
                    text += arrow + f["recommendation"][lang]
                if f.get("scope") == "company":
                    text += f"\n({w('company')})"
                g.add_row(f"[{SEVERITY_STYLE[f['severity']]}]{w(f['severity'])}[/]", text)
            parts.append(g)
        if v["recommendations"]:
            title = (
                w("playbook")
                if v["recommendations"][0]["rule"].startswith("stage.")
                else w("advice")
            )
            parts.append(_list(title, [r["message"][lang] for r in v["recommendations"]]))
    title = f"[bold]{v['account_id']}[/]" + (f" {name}" if name else "")
    return Panel(Group(*parts), title=title, title_align="left")


def _list(title: str, lines: list[str]) -> Table:
    t = Table(
        title=title, title_justify="left", box=None, show_header=False, expand=True, padding=(0, 1)
    )
    # the bullet in a column of its own: a line of Chinese (no spaces to break at) folds
    # beside it, instead of leaving the bullet alone on a line
    t.add_column(width=1, no_wrap=True)
    t.add_column(overflow="fold", ratio=1)
    for line in lines:
        t.add_row("•", line)
    return t


def _fact(labels: Mapping[str, Any], fact: str, lang: str) -> str:
    text = labels.get("@facts", {}).get(fact, {}).get(lang)
    return str(text) if text else fact.replace("_", " ")


def _rule(labels: Mapping[str, Any], rid: str, lang: str) -> str:
    text = labels.get("required_not_met_rules", {}).get(rid, {}).get(lang)
    return str(text) if text else rid
