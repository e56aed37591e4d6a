"""`kaq test`: run the rulesets' own test cases, report failures and rule coverage.

Exit 0 when every case passes and every ruleset meets ``--coverage-min``; 1 otherwise
(a failing case, a case or test file with errors, a ruleset that does not load, a
ruleset below the minimum). A ruleset without a test file has 0 % coverage. The
minimum applies to each ruleset on its own, not to an average.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.tools.casetest import (
    ERROR,
    FAILED,
    PASSED,
    CaseResult,
    SuiteResult,
    comparisons_of,
    deciding_rules,
    decision_note,
    describe_comparison,
    discover,
    format_result,
    load_case_file,
    run_suite,
    show,
)
from engine.tools.coverage import RulesetCoverage, measure, rule_list

FORMATS = ("text", "json")


def register(app: typer.Typer) -> None:
    """Add the `test` command to the `kaq` app."""
    app.command("test")(test_command)


def test_command(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of rulesets (NAME.yaml) and their test cases (NAME.tests.yaml) "
            "[default: $KAQ_RULESETS, else ./rulesets, else the shipped one].",
            file_okay=False,
            dir_okay=True,
            show_default=False,
        ),
    ] = None,
    coverage_min: Annotated[
        float | None,
        typer.Option(
            "--coverage-min",
            min=0,
            max=100,
            help="Fail when a ruleset's fire/not-fire rule coverage (%) is below this.",
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit", help="Also write the results as JUnit XML to this file.", dir_okay=False
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="text (people) or json (machines).")
    ] = "text",
) -> None:
    """Run the rulesets' test cases; report failures and per-rule coverage."""
    if output_format not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    console = Console(highlight=False)

    # Imported here so `kaq --help` does not compile anything.
    from engine import RulesetError, load_rulesets
    from engine.runtime.loader import rulesets_folder

    directory = rulesets_folder(directory)
    try:
        rulesets = load_rulesets(directory)
    except RulesetError as exc:
        if output_format == "json":
            payload = {"ok": False, "diagnostics": [d.to_dict() for d in exc.diagnostics]}
            typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        else:
            for d in exc.diagnostics:
                console.print(str(d), markup=False)
            console.print(f"{len(exc.diagnostics)} ruleset error(s): no case was run")
        raise typer.Exit(1) from None

    suite = run_suite([load_case_file(p) for p in discover(directory)], rulesets)
    coverage = {
        name: measure(name, rule_list(rs), suite.verdicts(name)) for name, rs in rulesets.items()
    }
    below = [c for c in coverage.values() if not c.meets(coverage_min)]

    if junit is not None:
        write_junit(junit, suite, coverage)
    if output_format == "json":
        typer.echo(json.dumps(to_json(suite, coverage, coverage_min), ensure_ascii=False, indent=2))
    else:
        print_text(console, suite, coverage, coverage_min)
    if not suite.ok or below:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- text


def summary_line(suite: SuiteResult) -> str:
    """`N passed, M failed` (and `, K errors` when cases or files could not run)."""
    errors = suite.count(ERROR) + len(suite.file_errors)
    line = f"{suite.count(PASSED)} passed, {suite.count(FAILED)} failed"
    return f"{line}, {errors} error{'s' if errors != 1 else ''}" if errors else line


def print_text(
    console: Console,
    suite: SuiteResult,
    coverage: dict[str, RulesetCoverage],
    coverage_min: float | None,
) -> None:
    for d in suite.file_errors:
        console.print(f"ERROR {d}", markup=False)
    for result in suite.results:
        if result.status != PASSED:
            print_failure(console, result)
    for cov in coverage.values():
        print_coverage(console, cov, coverage_min)
    console.print(summary_line(suite), markup=False)


def _cells(*values: str) -> list[Text]:
    """Table cells as literal text: rule ids and expressions hold `[...]`, not markup."""
    return [Text(v) for v in values]


def print_failure(console: Console, result: CaseResult) -> None:
    console.print()
    console.print(
        Text.assemble(
            (f"{result.status.upper()} ", "bold red"), result.id, f"  ({result.case.loc})"
        )
    )
    for d in result.diagnostics:
        console.print(f"  {d}", markup=False)
    if result.mismatches:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        table.add_column("want")
        table.add_column("expected", style="green")
        table.add_column("actual", style="red")
        table.add_column("at", style="dim")
        for m in result.mismatches:
            table.add_row(*_cells(m.key, show(m.expected), show(m.actual), str(m.loc or "")))
        console.print(table)
    note = decision_note(result)
    if note:
        console.print(f"  {note}", markup=False)
    trace = deciding_rules(result)
    if trace:
        table = Table(title="decided by", title_justify="left", box=None, padding=(0, 2))
        table.add_column("rule")
        table.add_column("outcome")
        table.add_column("facts")
        table.add_column("comparisons")
        for t in trace:
            facts = "\n".join(f"{k} = {show(v)}" for k, v in (t.get("facts") or {}).items())
            comparisons = "\n".join(describe_comparison(c) for c in comparisons_of(t))
            table.add_row(*_cells(str(t.get("rule")), str(t.get("outcome")), facts, comparisons))
        console.print(table)


def print_coverage(console: Console, cov: RulesetCoverage, coverage_min: float | None) -> None:
    console.print()
    threshold_total = len(cov.thresholds)
    threshold_covered = sum(1 for t in cov.thresholds if t.covered)
    line = (
        f"coverage {cov.ruleset}: {cov.percent:.1f}% of rules fired and not fired "
        f"({len(cov.covered)} of {len(cov.rules)}; {len(cov.partial)} partial, "
        f"{len(cov.uncovered)} uncovered; {cov.cases} evaluated); "
        + (
            f"thresholds {cov.threshold_percent:.1f}% on both sides "
            f"({threshold_covered} of {threshold_total})"
            if threshold_total
            else "no threshold comparisons seen"
        )
    )
    console.print(line, markup=False)
    if not cov.meets(coverage_min):
        console.print(
            f"coverage {cov.ruleset}: {cov.percent:.1f}% is below --coverage-min {coverage_min:g}",
            style="bold red",
            markup=False,
        )
    if cov.incomplete:
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        for column in ("rule", "kind", "fired", "not fired", "not evaluable", "never"):
            table.add_column(column)
        for r in cov.incomplete:
            table.add_row(
                *_cells(
                    r.rule,
                    r.kind,
                    str(r.fired),
                    str(r.not_fired),
                    str(r.not_evaluable),
                    " and ".join(side.replace("_", " ") for side in r.missing),
                )
            )
        console.print(table)
    one_sided = [t for t in cov.thresholds if not t.covered]
    if one_sided:
        table = Table(
            title="thresholds reached on one side only",
            title_justify="left",
            box=None,
            padding=(0, 2),
        )
        for column in ("rule", "comparison", "param", "true", "false", "unknown"):
            table.add_column(column)
        for t in one_sided:
            table.add_row(
                *_cells(t.rule, t.expr, t.param, str(t.true), str(t.false), str(t.unknown))
            )
        console.print(table)


# --------------------------------------------------------------------------- json


def result_to_dict(result: CaseResult) -> dict[str, Any]:
    loc = result.case.loc
    return {
        "id": result.id,
        "ruleset": result.ruleset,
        "note": result.case.note,
        "file": loc.file,
        "line": loc.line,
        "col": loc.col,
        "status": result.status,
        "mismatches": [
            {
                "key": m.key,
                "expected": m.expected,
                "actual": m.actual,
                "location": str(m.loc) if m.loc else None,
                "rules": m.rules,
            }
            for m in result.mismatches
        ],
        "diagnostics": [d.to_dict() for d in result.diagnostics],
        "decided_by": [dict(t) for t in deciding_rules(result)],
    }


def to_json(
    suite: SuiteResult, coverage: dict[str, RulesetCoverage], coverage_min: float | None
) -> dict[str, Any]:
    """The whole run as JSON-ready data: summary, cases, failures, coverage."""
    cases = [result_to_dict(r) for r in suite.results]
    below = [name for name, c in coverage.items() if not c.meets(coverage_min)]
    return {
        "ok": suite.ok and not below,
        "summary": {
            "passed": suite.count(PASSED),
            "failed": suite.count(FAILED),
            "errors": suite.count(ERROR),
            "file_errors": len(suite.file_errors),
        },
        "diagnostics": [d.to_dict() for d in suite.file_errors],
        "cases": cases,
        "failures": [c for c in cases if c["status"] != PASSED],
        "coverage": {
            "min": coverage_min,
            "below_min": below,
            "rulesets": {name: c.to_dict() for name, c in coverage.items()},
        },
    }


# --------------------------------------------------------------------------- junit


def to_junit(suite: SuiteResult, coverage: dict[str, RulesetCoverage]) -> ET.Element:
    """One <testsuite> per ruleset, one <testcase> per case; errors for unusable files."""
    root = ET.Element("testsuites", name="kaq test")
    suites: dict[str, ET.Element] = {}

    def suite_for(name: str) -> ET.Element:
        if name not in suites:
            el = suites[name] = ET.SubElement(root, "testsuite", name=name)
            props = ET.SubElement(el, "properties")
            if name in coverage:
                ET.SubElement(
                    props, "property", name="coverage", value=f"{coverage[name].percent:.1f}"
                )
        return suites[name]

    for name in coverage:
        suite_for(name)
    for file_result in suite.files:
        case_file = file_result.case_file
        for d in file_result.diagnostics:
            el = ET.SubElement(
                suite_for(case_file.ruleset),
                "testcase",
                classname=case_file.ruleset,
                name=str(case_file.path),
                file=str(case_file.path),
                line=str(d.line),
            )
            error = ET.SubElement(el, "error", type=d.code, message=d.message)
            error.text = str(d)
        for result in file_result.results:
            el = ET.SubElement(
                suite_for(result.ruleset),
                "testcase",
                classname=result.ruleset,
                name=result.case.note,
                file=result.case.loc.file,
                line=str(result.case.loc.line),
            )
            if result.status == FAILED:
                first = result.mismatches[0]
                said = f"expected {show(first.expected)}, got {show(first.actual)}"
                failure = ET.SubElement(
                    el,
                    "failure",
                    type="mismatch",
                    message=f"{first.key}: {said}",
                )
                failure.text = format_result(result)
            elif result.status == ERROR:
                error = ET.SubElement(
                    el,
                    "error",
                    type=result.diagnostics[0].code if result.diagnostics else "error",
                    message=result.diagnostics[0].message if result.diagnostics else "",
                )
                error.text = format_result(result)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for el in suites.values():
        cases = el.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
        }
        for key, value in counts.items():
            el.set(key, str(value))
            totals[key] += value
        el.set("skipped", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    return root


def write_junit(path: Path, suite: SuiteResult, coverage: dict[str, RulesetCoverage]) -> None:
    tree = ET.ElementTree(to_junit(suite, coverage))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
