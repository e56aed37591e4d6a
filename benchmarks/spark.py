"""Batch throughput: Spark on local[2] beside kaq on this machine's cores.

    .venv/bin/python benchmarks/spark.py [--n 100000] [--view decision] [--seed 14]

Generates N accounts (`engine.tools.corpus`, the generator of `kaq corpus generate`) into a
JSON Lines file, then decides all of them three ways and prints wall time and accounts/s:

1. in-process `decide` on one core: read each line, validate, decide (the `decision`
   view; with `--view full` or `summary`, the verdict too), as `kaq evaluate` does;
2. `kaq evaluate FILE --jobs 2` when that option exists (two processes), else skipped with
   a line saying so;
3. Spark, `local[2]`: `engine.spark.evaluate` over the file read in 8 partitions, the result
   written as Parquet, the way `kaq spark-evaluate` runs. The JVM's start is timed on its
   own; the job's wall time is from reading the file to the last part file written.

Wall time (`time.perf_counter`), one run each: on a shared 2-core machine, run it twice and
read the spread. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import load_rulesets  # noqa: E402
from engine.tools.accounts import parse_json_line  # noqa: E402
from engine.tools.corpus import iter_accounts, write_jsonl  # noqa: E402

RULESETS = ROOT / "rulesets"
KAQ = str(Path(sys.executable).parent / "kaq")


def line(what: str, n: int, seconds: float, extra: str = "") -> None:
    print(f"{what:<44} {seconds:8.2f} s  {n / seconds:9,.0f} accounts/s{extra}", flush=True)


def in_process(path: Path, view: str) -> tuple[int, float]:
    rs = load_rulesets(RULESETS)["key-account"]
    try:
        started = time.perf_counter()
        n = 0
        with path.open(encoding="utf-8") as fh:
            for text in fh:
                facts, problem = parse_json_line(text)
                assert problem is None, problem
                decision = rs.decide(facts)
                out = decision.to_dict() if view == "decision" else rs.view(decision, view)
                json.dumps(out, ensure_ascii=False)
                n += 1
        return n, time.perf_counter() - started
    finally:
        rs.close()


def evaluate_help() -> str:
    return subprocess.run([KAQ, "evaluate", "--help"], capture_output=True, text=True).stdout


def kaq_evaluate_jobs(path: Path, view: str, jobs: int, shown: str) -> float:
    args = [KAQ, "evaluate", str(path), "--jobs", str(jobs), "--rulesets", str(RULESETS)]
    if "--view" in shown:
        args += ["--view", view]
    args += ["--format", "jsonl" if "jsonl" in shown else "json"]
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def spark_local(path: Path, view: str, out: Path, partitions: int) -> tuple[float, float, int]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from engine.spark import error_counts, evaluate_rdd

    started = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("kaq benchmark")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    jvm = time.perf_counter() - started
    try:
        started = time.perf_counter()
        lines = spark.sparkContext.textFile(str(path), minPartitions=partitions)
        rows = lines.map(lambda t: (t,))
        evaluate_rdd(rows, ("value",), RULESETS, view=view, json_column="value").write.parquet(
            str(out)
        )
        job = time.perf_counter() - started
        written = spark.read.parquet(str(out))
        n, errors = written.count(), error_counts(written)
        assert not errors, errors
        return jvm, job, n
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--view", default="decision", choices=("decision", "summary", "full"))
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kaq-bench-spark-"))
    try:
        accounts = tmp / "accounts.jsonl"
        write_jsonl(iter_accounts(args.n, args.seed), accounts)
        print(
            f"{args.n:,} accounts (seed {args.seed}), view {args.view}, "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows every line)",
            flush=True,
        )
        n, seconds = in_process(accounts, args.view)
        line("in-process decide, one core", n, seconds)
        shown = evaluate_help()
        if "--jobs" in shown:
            seconds = kaq_evaluate_jobs(accounts, args.view, 2, shown)
            line("kaq evaluate --jobs 2", args.n, seconds)
        else:
            print("kaq evaluate --jobs 2: this kaq evaluate has no --jobs option; skipped")
        jvm, job, n = spark_local(accounts, args.view, tmp / "out.parquet", args.partitions)
        assert n == args.n, (n, args.n)
        line(
            f"Spark local[2], {args.partitions} partitions (job)",
            n,
            job,
            f"   (+ {jvm:.1f} s JVM start: {n / (job + jvm):,.0f} accounts/s in all)",
        )
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
