"""Impact of a ruleset change on a corpus of accounts (`kaq diff`).

Three steps, each usable on its own, each a module:

1. `sides`: each side's ruleset sources, from a folder or from a git revision
   (`git ls-tree` / `git show`, never a checkout): `read_side`;
2. `changes`: the two rulesets compared statically (rules added, removed, changed;
   params, derived facts and decision steps, and which rules read a changed param,
   as the compiler resolved it): `ruleset_changes`;
3. `compare`: the verdicts of every account under both sides, one account at a time
   (`Comparison`; `compare_verdicts` over lists); `run.analyze` does 1-3 end to end,
   streaming the corpus (`corpus.iter_corpus`) so that memory does not grow with it.

The report is plain JSON-ready data; `render` turns it into a terminal report, a
pull-request comment or JSON, and holds the CI gate (`exceeds`).

Example::

    report = analyze(read_side("origin/main"), read_side("rulesets"),
                     iter_corpus(Path("corpus/accounts-2000.jsonl")))
    print(render_markdown(report))
"""

from __future__ import annotations

from .changes import ruleset_changes
from .compare import Comparison, compare_verdicts
from .corpus import iter_corpus, load_corpus
from .render import exceeds, render_json, render_markdown, render_text
from .run import analyze, default_jobs
from .sides import ImpactError, RulesetSide, read_side

__all__ = [
    "Comparison",
    "ImpactError",
    "RulesetSide",
    "analyze",
    "compare_verdicts",
    "default_jobs",
    "exceeds",
    "iter_corpus",
    "load_corpus",
    "read_side",
    "render_json",
    "render_markdown",
    "render_text",
    "ruleset_changes",
]
