"""`kaq spark-evaluate INPUT OUTPUT`: decide every account of a JSON Lines or Parquet input
on Spark, and write one result row per account (see `engine.spark` for the columns).

The formats follow the suffixes: `.jsonl`, `.ndjson` or `.json` is JSON Lines (one account
object a line, blank lines skipped, as `kaq evaluate` reads them), `.parquet` is Parquet
(the columns are the facts, nulls absent). OUTPUT is a folder of part files, as every Spark
writer makes; it must not exist unless `--overwrite`. Every result row carries `input_row`,
the 1-based line (JSON Lines) or row (Parquet) of its account in INPUT.

Under `spark-submit` the master and resources come from Spark's own configuration;
run directly, `--master` (default `local[*]`) says where. Exit 0 when the job ran, with
the rows that were not decided counted on stderr (they are in OUTPUT with an `error`);
1 when kaq failed on valid facts (a defect, logged), 2 on a usage or ruleset error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cli._common import RULESETS_HELP, err_console, print_diagnostics

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet",)


def format_of(path: str) -> str | None:
    """`jsonl` or `parquet` by the path's suffix (a file or a folder), else None."""
    suffix = Path(path.rstrip("/")).suffix.lower()
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return None


def _fail(message: str) -> NoReturn:
    err_console.print(f"kaq spark-evaluate: {message}", markup=False)
    raise typer.Exit(2)


def spark_evaluate(
    input_path: Annotated[
        str, typer.Argument(metavar="INPUT", help="accounts: .jsonl or .parquet")
    ],
    output_path: Annotated[
        str, typer.Argument(metavar="OUTPUT", help="results folder: .jsonl or .parquet")
    ],
    master: Annotated[
        str | None,
        typer.Option("--master", help="Spark master URL [default: spark-submit's, else local[*]]"),
    ] = None,
    view: Annotated[
        str, typer.Option("--view", help="decision, or full / summary (adds a verdict column)")
    ] = "decision",
    rulesets: Annotated[
        Path | None, typer.Option("--rulesets", help=RULESETS_HELP, show_default=False)
    ] = None,
    ruleset: Annotated[str, typer.Option("--ruleset", help="ruleset name")] = "key-account",
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            min=1,
            help="partitions to spread the accounts over [default: 4 per core of the cluster]",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace OUTPUT")] = False,
) -> None:
    """Decide accounts on Spark: JSON Lines or Parquet in, one result row per account out."""
    from engine import VIEWS, RulesetError

    in_format, out_format = format_of(input_path), format_of(output_path)
    if in_format is None:
        _fail(f"INPUT `{input_path}`: use a .jsonl, .ndjson, .json or .parquet path")
    if out_format is None:
        _fail(f"OUTPUT `{output_path}`: use a .jsonl, .ndjson, .json or .parquet path")
    if view not in VIEWS:
        _fail(f"--view must be one of {', '.join(VIEWS)}, not `{view}`")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _fail("pyspark is not installed: pip install 'kaq[spark]'")

    from pyspark.sql.types import LongType, StructField

    from engine.spark import error_counts, evaluate_rdd, ship

    try:
        ship(rulesets, ruleset)  # validated before a JVM starts: errors come back at once
    except RulesetError as exc:
        print_diagnostics(exc)
        raise typer.Exit(2) from None
    except (ValueError, OSError) as exc:
        _fail(str(exc))

    spark, ours = _session(master)
    try:
        rows, columns = _read(spark, input_path, in_format, partitions)
        result = evaluate_rdd(
            rows,
            columns,
            rulesets=rulesets,
            ruleset=ruleset,
            view=view,
            json_column="value" if in_format == "jsonl" else None,
            keep=[StructField("input_row", LongType(), False)],
        )
        writer = result.write.mode("overwrite" if overwrite else "errorifexists")
        try:
            if out_format == "jsonl":
                writer.json(output_path)
            else:
                writer.parquet(output_path)
        except Exception as exc:  # Spark's own errors (AnalysisException, Py4JJavaError)
            if "already exists" in str(exc):
                _fail(f"OUTPUT `{output_path}` exists (give --overwrite to replace it)")
            raise
        written = _read_back(spark, output_path, out_format)
        total = written.count()
        errors = error_counts(written)
    finally:
        if ours:
            spark.stop()
    _report(total, errors, output_path)


def _session(master: str | None) -> tuple[Any, bool]:
    """The running session (a caller's, a test's), or a new one; True if new."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder.appName("kaq spark-evaluate")
    # spark-submit starts the JVM first and tells the Python driver its port: the master
    # and the resources are then spark-submit's; run directly, the default is this machine
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[*]"
    if master is not None:
        builder = builder.master(master)
        if master.startswith("local"):
            # local executors are this machine's Python (the one kaq is installed in), and
            # the driver talks to them on the loopback, whatever the host name resolves to
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = builder.config("spark.driver.host", "127.0.0.1").config(
                "spark.driver.bindAddress", "127.0.0.1"
            )
    return builder.getOrCreate(), True


def _read(spark: Any, path: str, in_format: str, partitions: int | None) -> tuple[Any, list[str]]:
    """The accounts as rows `(input_row, ...)` spread over enough partitions for every core,
    and the names of the rows' positions.

    The rows stay in Python from reading to deciding: they cross into the Python workers
    once (numbering them in a DataFrame first would send them through the JVM and back).
    """
    sc = spark.sparkContext
    n = partitions or 4 * sc.defaultParallelism
    if in_format == "jsonl":
        # textFile splits one file into ranges in order: lines keep their order and number
        lines = sc.textFile(path, minPartitions=n).zipWithIndex()
        rows = lines.filter(lambda p: p[0].strip() != "").map(lambda p: (p[1] + 1, p[0]))
        return rows, ["input_row", "value"]
    df = spark.read.parquet(path)
    if "input_row" in df.columns:
        _fail("a Parquet INPUT must not have a column `input_row` (kaq adds it)")
    numbered = df.rdd.zipWithIndex().map(lambda p: (p[1] + 1, p[0]))
    if numbered.getNumPartitions() < n:
        numbered = numbered.sortByKey(numPartitions=n)  # spread, still in input order
    return numbered.map(lambda p: (p[0], *p[1])), ["input_row", *df.columns]


def _read_back(spark: Any, path: str, out_format: str) -> Any:
    if out_format == "parquet":
        return spark.read.parquet(path).select("error")
    return spark.read.schema("error STRING").json(path)


def _report(total: int, errors: dict[str, int], output_path: str) -> None:
    rejected = sum(errors.values())
    internal = {c: n for c, n in errors.items() if not c.startswith("facts.")}
    line = f"{total} accounts: {total - rejected} decided, {rejected} not decided"
    if errors:
        line += " (" + ", ".join(f"{c}: {n}" for c, n in sorted(errors.items())) + ")"
    sys.stderr.write(f"{line}; written to {output_path}\n")
    if rejected:
        sys.stderr.write("the rows not decided are in the output with an `error`\n")
    if internal:
        sys.stderr.write(
            "kaq failed on valid facts: a defect of kaq or of the ruleset, not of the input\n"
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `kaq spark-evaluate` to the app."""
    app.command("spark-evaluate")(spark_evaluate)
