"""`kaq diff`: which verdicts and findings a ruleset change moves, on a corpus of accounts."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer


class DiffFormat(enum.StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


def diff(
    revisions: Annotated[
        list[str],
        typer.Argument(
            help="BASE HEAD: ruleset folders or git revisions (with --base, only HEAD).",
            metavar="[BASE] HEAD",
            show_default=False,
        ),
    ],
    corpus: Annotated[
        Path, typer.Option("--corpus", help="Accounts to evaluate: JSON Lines (or a JSON list).")
    ],
    base: Annotated[
        str | None, typer.Option("--base", help="Base revision or folder (instead of BASE).")
    ] = None,
    output_format: Annotated[
        DiffFormat, typer.Option("--format", help="text, markdown (a PR comment) or json.")
    ] = DiffFormat.text,
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 1 when any verdict changed.")
    ] = False,
    max_moved: Annotated[
        int | None,
        typer.Option(
            "--max-moved", min=0, help="Exit 1 when more accounts than this change qualification."
        ),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=0, help="How many changed accounts to detail.")
    ] = 10,
    ruleset: Annotated[str, typer.Option("--ruleset", help="Ruleset name.")] = "key-account",
    repo: Annotated[
        Path, typer.Option("--repo", help="Git repository that revisions are read from.")
    ] = Path("."),
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            help="Worker processes for large corpora (default: the CPUs available, at most 8).",
            show_default=False,
        ),
    ] = None,
    rulesets_path: Annotated[
        str, typer.Option("--rulesets-path", help="Folder of the rulesets inside a revision.")
    ] = "rulesets",
) -> None:
    """Impact of a ruleset change: rules changed, qualification moves, guardrails, scores."""
    from engine.errors import RulesetError
    from engine.tools.impact import (
        ImpactError,
        analyze,
        default_jobs,
        exceeds,
        iter_corpus,
        read_side,
        render_json,
        render_markdown,
        render_text,
    )

    if base is not None:
        if len(revisions) > 1:
            _usage("give either --base REV HEAD or BASE HEAD, not both")
        base_spec, head_spec = base, (revisions[0] if revisions else rulesets_path)
    elif len(revisions) == 2:
        base_spec, head_spec = revisions
    else:
        _usage("expected BASE and HEAD (ruleset folders or git revisions)")

    try:
        base_side = read_side(base_spec, repo=repo, rulesets_path=rulesets_path)
        head_side = read_side(head_spec, repo=repo, rulesets_path=rulesets_path)
        accounts = iter_corpus(corpus)
        report = analyze(
            base_side,
            head_side,
            accounts,
            ruleset=ruleset,
            top=top,
            jobs=jobs if jobs is not None else default_jobs(),
        )
    except ImpactError as e:
        typer.echo(f"kaq diff: {e}", err=True)
        raise typer.Exit(2) from e
    except RulesetError as e:
        typer.echo("kaq diff: a ruleset does not load:", err=True)
        for d in e.diagnostics:
            typer.echo(f"  {d}", err=True)
        raise typer.Exit(2) from e

    render = {
        DiffFormat.text: render_text,
        DiffFormat.markdown: render_markdown,
        DiffFormat.json: render_json,
    }[output_format]
    typer.echo(render(report), nl=False)
    if exceeds(report, fail_on_change=fail_on_change, max_moved=max_moved):
        raise typer.Exit(1)


def _usage(message: str) -> None:
    typer.echo(f"kaq diff: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add `kaq diff` to the app."""
    app.command("diff")(diff)
