"""`kaq serve`: run the HTTP API (`api.app:app`) with uvicorn, configured by `api.server`.

Several workers are separate processes under uvicorn's supervisor, which
replaces a worker that dies and, on SIGHUP, starts fresh workers before retiring
the old ones. Each worker loads its own rulesets after it starts: durable_rules
state is never shared, not even through fork.

The workers of one `kaq serve` share a run directory (`KAQ_RUN_DIR`, made here and
removed at exit). On the folder source it holds the run's ruleset generation: the
files one worker validated (at its start, on `POST /v1/admin/reload`, on SIGHUP),
which every worker watches and loads, so that no worker stays on an older version
and none loads files changed after their validation. On the database source
(`--ruleset-source db`) every worker follows the published versions itself.

With more than one worker, metrics are kept in a fresh directory named by
`PROMETHEUS_MULTIPROC_DIR` (set here, before any worker starts, and removed at
exit) so that `/metrics` counts every worker, not just the one that answers.

The service's own loggers (`kaq.*`: decision log start-up, ruleset loads and
reloads with their generation and digests, failed reloads with every
diagnostic) write to stderr at INFO whatever uvicorn's `--log-level`, since
they are rare and are what an operator needs; `--log-level debug` makes them
verbose too.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the `kaq` loggers, for every worker."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["kaq"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(levelprefix)s %(name)s[%(process)d]: %(message)s",
        "use_colors": None,
    }
    config["handlers"]["kaq"] = {
        "formatter": "kaq",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    verbose = log_level.lower() in ("debug", "trace")
    config["loggers"]["kaq"] = {
        "handlers": ["kaq"],
        "level": "DEBUG" if verbose else "INFO",
        "propagate": False,
    }
    return config


def _preflight(settings: Any) -> None:
    """Refuse to start, with located diagnostics, on rulesets or a log URL that cannot work.

    Without this, uvicorn would print a traceback per worker (and keep restarting them).
    """
    from api.decision_log import check_opens
    from cli._common import print_diagnostics
    from engine.errors import RulesetError
    from engine.runtime.loader import load_rulesets

    problem = check_opens(settings.db_url)
    if problem is not None:
        typer.echo(f"kaq serve: {problem}", err=True)
        raise typer.Exit(2)
    if settings.ruleset_source == "db":
        _preflight_db(settings)
        return
    if not settings.rulesets.is_dir():
        typer.echo(f"kaq serve: no ruleset folder {settings.rulesets}", err=True)
        raise typer.Exit(2)
    try:
        for rs in load_rulesets(settings.rulesets).values():
            rs.close()
    except RulesetError as exc:
        typer.echo(f"kaq serve: the rulesets in {settings.rulesets} do not load:", err=True)
        print_diagnostics(exc)
        raise typer.Exit(2) from None


def _preflight_db(settings: Any) -> None:
    """The database source must answer and hold a version that loads."""
    import psycopg

    from api.ruleset_source import DbSource
    from cli._common import print_diagnostics
    from engine.errors import RulesetError
    from engine.runtime.loader import load_rulesets_from_sources
    from engine.tools.gate import ruleset_files

    try:
        head = DbSource(settings.db_url).head()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"kaq serve: the ruleset database does not answer: {first}", err=True)
        raise typer.Exit(2) from None
    if head is None:
        typer.echo(
            "kaq serve: no ruleset version is published in the database yet; "
            "run `kaq publish DIR --db URL` first",
            err=True,
        )
        raise typer.Exit(2)
    try:
        for rs in load_rulesets_from_sources(ruleset_files(head.files)).values():
            rs.close()
    except RulesetError as exc:
        typer.echo(f"kaq serve: published version {head.info.version} does not load:", err=True)
        print_diagnostics(exc)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="interface to listen on"),
        port: int = typer.Option(8000, help="TCP port"),
        rulesets: Path = typer.Option(None, help="ruleset folder [env KAQ_RULESETS, rulesets]"),
        db: str = typer.Option(None, help="decision log URL [env KAQ_DB_URL, sqlite:///kaq.db]"),
        ruleset_source: str = typer.Option(
            None,
            "--ruleset-source",
            help="dir (the rulesets folder) or db (versions published with `kaq publish` in "
            "the database of --db) [env KAQ_RULESET_SOURCE, dir]",
            show_default=False,
        ),
        workers: int = typer.Option(1, min=1, help="worker processes"),
        log_level: str = typer.Option(
            "info", help="uvicorn log level (kaq's own events log at INFO regardless)"
        ),
        access_log: bool = typer.Option(
            None,
            "--access-log/--no-access-log",
            help="a log line per request [env KAQ_ACCESS_LOG, off: /metrics counts requests]",
            show_default=False,
        ),
        http: str = typer.Option(
            None,
            "--http",
            help="HTTP parser: httptools (C) or h11 (pure Python) [env KAQ_HTTP, httptools]",
            show_default=False,
        ),
    ) -> None:
        """Run the API; one process per worker, each with its own engine."""
        from pydantic import ValidationError

        from api import server
        from api.settings import Settings, describe_errors

        # Workers are fresh interpreters: settings travel in the environment.
        if rulesets is not None:
            os.environ["KAQ_RULESETS"] = str(rulesets.resolve())
        if db is not None:
            os.environ["KAQ_DB_URL"] = db
        if ruleset_source is not None:
            os.environ["KAQ_RULESET_SOURCE"] = ruleset_source
        if access_log is not None:
            os.environ["KAQ_ACCESS_LOG"] = "1" if access_log else "0"
        if http is not None:
            os.environ["KAQ_HTTP"] = http
        try:
            settings = Settings()
        except ValidationError as exc:
            # name the environment variable (or option) a person sets, not the field
            for line in describe_errors(exc):
                typer.echo(f"kaq serve: {line}", err=True)
            raise typer.Exit(2) from None
        _preflight(settings)
        metrics_dir = None
        if workers > 1:
            # Fresh each run: files left by an earlier run would be added to this one's counts.
            metrics_dir = tempfile.mkdtemp(prefix="kaq-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        else:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # The workers' shared ruleset generation (folder source); fresh each run.
        run_dir = tempfile.mkdtemp(prefix="kaq-run-")
        os.environ["KAQ_RUN_DIR"] = run_dir
        try:
            server.run(
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                log_config=log_config(log_level),
                http=settings.http,
                access_log=settings.access_log,
            )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
