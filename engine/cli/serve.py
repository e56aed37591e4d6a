"""`kaq serve`: run the HTTP API (`api.app:app`) with uvicorn.

Several workers are separate processes under uvicorn's supervisor, which
replaces a worker that dies and, on SIGHUP, starts fresh workers (each loads
the rulesets again) before retiring the old ones, keeping the old ones when
the new ones fail to start. Each worker loads its own rulesets after it starts:
durable_rules state is never shared, not even through fork.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="interface to listen on"),
        port: int = typer.Option(8000, help="TCP port"),
        rulesets: Path = typer.Option(None, help="ruleset folder [env KAQ_RULESETS, rulesets]"),
        db: str = typer.Option(None, help="decision log URL [env KAQ_DB_URL, sqlite:///kaq.db]"),
        workers: int = typer.Option(1, min=1, help="worker processes"),
        log_level: str = typer.Option("info", help="uvicorn log level"),
    ) -> None:
        """Run the API; one process per worker, each with its own engine."""
        import uvicorn
        from pydantic import ValidationError

        from api.settings import Settings

        # Workers are fresh interpreters: settings travel in the environment.
        if rulesets is not None:
            os.environ["KAQ_RULESETS"] = str(rulesets.resolve())
        if db is not None:
            os.environ["KAQ_DB_URL"] = db
        try:
            settings = Settings()
        except ValidationError as exc:
            typer.echo(f"kaq serve: invalid settings:\n{exc}", err=True)
            raise typer.Exit(2) from None
        if not settings.rulesets.is_dir():
            typer.echo(f"kaq serve: no ruleset folder {settings.rulesets}", err=True)
            raise typer.Exit(2)
        uvicorn.run(
            "api.app:app",
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            timeout_graceful_shutdown=30,
            server_header=False,
        )
