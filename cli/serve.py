"""`kaq serve`: run the HTTP API (`api.app:app`) with uvicorn, configured by `api.server`.

Several workers are separate processes under uvicorn's supervisor, which
replaces a worker that dies and, on SIGHUP, starts fresh workers (each loads
the rulesets again) before retiring the old ones, keeping the old ones when
the new ones fail to start. Each worker loads its own rulesets after it starts:
durable_rules state is never shared, not even through fork.

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

    try:
        for rs in load_rulesets(settings.rulesets).values():
            rs.close()
    except RulesetError as exc:
        typer.echo(f"kaq serve: the rulesets in {settings.rulesets} do not load:", err=True)
        print_diagnostics(exc)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="interface to listen on"),
        port: int = typer.Option(8000, help="TCP port"),
        rulesets: Path = typer.Option(None, help="ruleset folder [env KAQ_RULESETS, rulesets]"),
        db: str = typer.Option(None, help="decision log URL [env KAQ_DB_URL, sqlite:///kaq.db]"),
        workers: int = typer.Option(1, min=1, help="worker processes"),
        log_level: str = typer.Option(
            "info", help="uvicorn log level (kaq's own events log at INFO regardless)"
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
        try:
            settings = Settings()
        except ValidationError as exc:
            # name the environment variable (or option) a person sets, not the field
            for line in describe_errors(exc):
                typer.echo(f"kaq serve: {line}", err=True)
            raise typer.Exit(2) from None
        if not settings.rulesets.is_dir():
            typer.echo(f"kaq serve: no ruleset folder {settings.rulesets}", err=True)
            raise typer.Exit(2)
        _preflight(settings)
        metrics_dir = None
        if workers > 1:
            # Fresh each run: files left by an earlier run would be added to this one's counts.
            metrics_dir = tempfile.mkdtemp(prefix="kaq-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            # POST /v1/admin/reload reaches one worker; it validates, then asks this
            # supervisor (SIGHUP) to replace every worker with the new rulesets.
            os.environ["KAQ_SUPERVISOR_PID"] = str(os.getpid())
        else:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            os.environ.pop("KAQ_SUPERVISOR_PID", None)
        try:
            server.run(
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                log_config=log_config(log_level),
            )
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
