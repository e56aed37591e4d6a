"""`kaq log prune` and `kaq log export`: the decision log's retention, and its facts as a
corpus (api.md, Decision log).

`export` writes the facts of every decision logged in a period as JSON Lines, one account
per line in the order they were decided: a corpus for `kaq diff --corpus`, which replays
real decisions against a proposed ruleset. It streams (a server-side cursor on PostgreSQL,
a plain cursor on SQLite), so memory does not grow with the log. With `--out` the file
appears only once it is whole (written beside it, then renamed): an interrupted export
leaves no half file that looks complete.

`prune` deletes the decisions older than a number of days, as the server does by itself
with `KAQ_LOG_RETENTION_DAYS`.

Both read `--db`, else `KAQ_DB_URL`, else the server's default (`sqlite:///kaq.db`). Exit
0 on success, 1 when the log cannot be read or the output cannot be written, 2 on a usage
error (a bad date, a log file that does not exist).
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import Output, OutputError, for_stdout

DB_HELP = "decision log URL [env KAQ_DB_URL, default sqlite:///kaq.db]"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"kaq log: {message}", err=True)
    return typer.Exit(code)


def _url(db: str | None) -> str:
    from api.settings import Settings

    return db or os.environ.get("KAQ_DB_URL") or str(Settings.model_fields["db_url"].default)


def _open(url: str) -> Any:
    """The log's backend, migrated; a usage error when it does not exist or cannot be."""
    from api.decision_log import SchemaTooNew, backend_for
    from api.decision_log.backends import SQLite
    from api.redact import redact_url, scrub

    try:
        backend = backend_for(url)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if isinstance(backend, SQLite) and backend.path != ":memory:":
        if not Path(backend.path).is_file():
            # opening would create an empty log and report it as if it were the real one
            raise _fail(f"there is no decision log at {backend.path} (--db or KAQ_DB_URL)", 2)
    try:
        backend.migrate()
    except SchemaTooNew as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise _fail(
            f"the decision log {redact_url(url)} cannot be opened: {scrub(reason, url)}"
        ) from None
    return backend


def _moment(text: str | None, option: str) -> datetime | None:
    """A date (YYYY-MM-DD, midnight UTC) or an ISO 8601 time (UTC unless it says)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _fail(
            f"{option} {text!r} is not a date: write it as 2026-11-30 or 2026-11-30T08:00:00Z",
            2,
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _shown(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def prune(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            metavar="DAYS",
            min=0,
            help="delete decisions logged more than DAYS days ago",
            show_default=False,
        ),
    ],
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP, show_default=False)] = None,
) -> None:
    """Delete the decisions logged more than DAYS days ago."""
    from api.redact import redact_url

    url = _url(db)
    backend = _open(url)
    cutoff = datetime.now(UTC) - timedelta(days=older_than)
    try:
        removed = backend.prune(cutoff)
        left = backend.count()
    except Exception as exc:
        raise _fail(f"pruning {redact_url(url)} failed: {' '.join(str(exc).split())}") from None
    finally:
        backend.close()
    days = f"{older_than:g} day" + ("" if older_than == 1 else "s")
    typer.echo(
        f"removed {removed:,} decision(s) logged before {_shown(cutoff)} (older than {days}) "
        f"from {redact_url(url)}; {left:,} remain"
    )


def export(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="DATE", help="from this date or time on (UTC)", show_default=False
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", metavar="DATE", help="before this date or time (UTC)", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="write to this file [default: standard output]", show_default=False
        ),
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP, show_default=False)] = None,
) -> None:
    """Write the facts of the logged decisions as JSON Lines, a corpus for `kaq diff`."""
    import orjson

    from api.redact import redact_url

    lo = _moment(since, "--since")
    hi = _moment(until, "--until")
    if lo and hi and hi <= lo:
        raise _fail(f"--until ({_shown(hi)}) must be after --since ({_shown(lo)})", 2)
    url = _url(db)
    backend = _open(url)
    tmp: Path | None = None
    fd = -1
    if out is not None:
        if out.is_dir():
            backend.close()
            raise _fail(f"--out {out} is a folder; name a file", 2)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        tmp = Path(name)
        sink = Output(fd)
    else:
        sink = for_stdout()
    n = 0
    try:
        for record in backend.export(lo, hi):
            sink.write(orjson.dumps(record["facts"]) + b"\n")
            n += 1
        sink.flush()
        if tmp is not None:
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, out)  # type: ignore[arg-type]
            tmp = None
    except OutputError as exc:
        raise _fail(f"the export is incomplete: {exc}") from None
    except Exception as exc:
        raise _fail(
            f"reading {redact_url(url)} failed after {n:,} decision(s); the export is "
            f"incomplete: {' '.join(str(exc).split())}"
        ) from None
    finally:
        backend.close()
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    span = (f" since {_shown(lo)}" if lo else "") + (f" before {_shown(hi)}" if hi else "")
    where = f" to {out}" if out is not None else ""
    print(f"exported {n:,} decision(s){span}{where}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The decision log: retention (prune) and its facts as a corpus (export).",
        no_args_is_help=True,
    )
    group.command("prune")(prune)
    group.command("export")(export)
    app.add_typer(group, name="log")
