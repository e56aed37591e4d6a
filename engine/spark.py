"""Batch on Spark: every row of a DataFrame decided (and explained) on the executors.

>>> from engine.spark import evaluate                                  # doctest: +SKIP
>>> out = evaluate(spark.read.parquet("accounts.parquet"), rulesets="rulesets")  # doctest: +SKIP
>>> out.groupBy("qualification").count().show()                        # doctest: +SKIP

The ruleset travels to the executors as its **source text** with its **digest**; each
Python worker process checks the digest of the text it received (a mismatch fails the task:
:class:`engine.errors.DigestMismatch`), prepares the ruleset once from that text, and keeps
it for every later partition. A prepared ruleset is never pickled: durable_rules keeps its
state in C, per process, so it is built where it runs.

The result has one row per input row, in the input's order within each partition:

- the decision fields of api.md's `decision` view: ``account_id``, ``ruleset`` (struct of
  name, version, digest), ``qualification``, ``score``, ``segments``, ``stage``,
  ``missing_facts``, ``outcomes``, ``points``, ``severities``, ``scopes``;
- ``verdict``, the `full` or `summary` verdict as JSON text, for those views only;
- ``error``: null, or a JSON object ``{"code", "message", "errors"}`` for a row that was not
  decided (``facts.invalid`` with the pydantic-style ``errors`` of the facts,
  ``facts.unreadable`` for a JSON text that is not an account object, an ``internal`` or
  ``evaluation.*`` code for a failure of kaq on valid facts). A bad row is never dropped;
  :func:`error_counts` counts them.

pyspark is imported only when a function here runs: ``import engine`` never needs it.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import DigestMismatch, FactsError, InternalError
from engine.lang.source import source_digest
from engine.runtime.loader import compile_rulesets, read_sources, rulesets_folder
from engine.runtime.prepared import VIEWS, PreparedRuleset, prepare

if TYPE_CHECKING:  # pragma: no cover - types only
    from pyspark import RDD
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructField, StructType

log = logging.getLogger("kaq.spark")

DECISION_FIELDS = (
    "account_id",
    "ruleset",
    "qualification",
    "score",
    "segments",
    "stage",
    "missing_facts",
    "outcomes",
    "points",
    "severities",
    "scopes",
)


@dataclass(frozen=True)
class ShippedRuleset:
    """What an executor receives: one ruleset's source text, its file name and digest."""

    name: str
    file: str
    text: str
    digest: str


def ship(rulesets: Path | str | Mapping[str, str] | None, ruleset: str) -> ShippedRuleset:
    """Validate the rulesets on the driver and pick the one named `ruleset` for shipping.

    `rulesets`: a folder (None: the default one, as `kaq evaluate` finds it), a single
    ruleset file, or in-memory sources keyed by file name. RulesetError on any problem;
    ValueError when no ruleset has that name.
    """
    sources, base = _sources(rulesets)
    compiled = {f.compiled.doc.name: f.compiled for f in compile_rulesets(sources, base=base)}
    if ruleset not in compiled:
        known = ", ".join(sorted(compiled)) or "none"
        raise ValueError(f"no ruleset named `{ruleset}` (loaded: {known})")
    c = compiled[ruleset]
    return ShippedRuleset(ruleset, c.source.file, c.source.text, c.digest)


def _sources(rulesets: Path | str | Mapping[str, str] | None) -> tuple[dict[str, str], Path | None]:
    if isinstance(rulesets, Mapping):
        return dict(rulesets), None
    path = rulesets_folder(rulesets)
    if path.is_file():
        return {str(path): path.read_text(encoding="utf-8")}, path.parent
    return read_sources(path), path


# ------------------------------------------------------------------ on the executors

# digest -> the ruleset prepared from that text, once per Python worker process
_PREPARED: dict[str, PreparedRuleset] = {}


def prepared(shipped: ShippedRuleset) -> PreparedRuleset:
    """The ruleset of `shipped`, prepared once per process; refused if its digest differs."""
    actual = source_digest(shipped.text)
    if actual != shipped.digest:
        raise DigestMismatch(
            f"ruleset `{shipped.name}` ({shipped.file}) arrived with digest {shipped.digest} "
            f"but its text hashes to {actual}: refusing to evaluate with it"
        )
    rs = _PREPARED.get(shipped.digest)
    if rs is None:
        rs = prepare(shipped.file, shipped.text)
        if rs.digest != shipped.digest:  # the compiler's digest is the same function
            raise DigestMismatch(f"ruleset `{shipped.name}` compiled to digest {rs.digest}")
        _PREPARED[shipped.digest] = rs
    return rs


def _plain(value: Any) -> Any:
    """A Spark row value as the JSON value a client would send."""
    as_dict = getattr(value, "asDict", None)  # a struct arrives as a Row: a tuple with names
    if callable(as_dict):
        value = as_dict(recursive=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()
    return value


def _error(code: str, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> str:
    body = {"code": code, "message": message, "errors": [dict(e) for e in errors]}
    return json.dumps(body, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class PartitionEvaluator:
    """The function Spark runs on each partition (picklable: it holds text, never an engine).

    `json_column`: each row's account is the JSON text in that column; else the row's
    columns (less the `keep` ones) are the facts, nulls meaning absent.
    """

    shipped: ShippedRuleset
    view: str
    columns: tuple[str, ...]
    keep: tuple[str, ...] = ()
    json_column: str | None = None

    def __call__(self, rows: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        rs = prepared(self.shipped)
        keep_at = tuple(self.columns.index(k) for k in self.keep)
        facts_at = (
            None
            if self.json_column is not None
            else tuple(i for i, c in enumerate(self.columns) if c not in self.keep)
        )
        text_at = self.columns.index(self.json_column) if self.json_column is not None else -1
        with_verdict = self.view != "decision"
        for row in rows:
            kept = tuple(row[i] for i in keep_at)
            if facts_at is None:
                raw, problem = _read_json(row[text_at])
            else:
                raw = {self.columns[i]: _plain(row[i]) for i in facts_at if row[i] is not None}
                problem = None
            if problem is not None:
                yield kept + _failed(raw, with_verdict, "facts.unreadable", problem)
                continue
            try:
                decision = rs.decide(raw)
                verdict = rs.view(decision, self.view) if with_verdict else None
            except FactsError as exc:
                yield kept + _failed(raw, with_verdict, exc.code, str(exc), exc.errors)
                continue
            except InternalError as exc:  # kaq's defect, not the row's: said, logged, counted
                log.exception("kaq failed on valid facts (account %r)", _account_id(raw))
                yield kept + _failed(raw, with_verdict, exc.code, str(exc))
                continue
            yield kept + _decided(decision.to_dict(), verdict, with_verdict)


def _read_json(text: Any) -> tuple[dict[str, Any] | None, str | None]:
    from engine.tools.accounts import parse_json_line

    if not isinstance(text, str) or not text.strip():
        return None, "no account: the row's JSON text is empty"
    return parse_json_line(text)


def _account_id(raw: Any) -> str | None:
    if isinstance(raw, Mapping) and isinstance(raw.get("account_id"), str):
        return raw["account_id"]
    return None


def _decided(d: dict[str, Any], verdict: Any, with_verdict: bool) -> tuple[Any, ...]:
    ref = d["ruleset"]
    out: tuple[Any, ...] = (
        d["account_id"],
        (ref["name"], ref["version"], ref["digest"]),
        d["qualification"],
        float(d["score"]),
        d["segments"],
        d["stage"],
        d["missing_facts"],
        d["outcomes"],
        {k: None if v is None else float(v) for k, v in d["points"].items()},
        d["severities"],
        d["scopes"],
    )
    if with_verdict:
        out += (json.dumps(verdict, ensure_ascii=False, separators=(",", ":")),)
    return out + (None,)


def _failed(
    raw: Any,
    with_verdict: bool,
    code: str,
    message: str,
    errors: Sequence[Mapping[str, Any]] = (),
) -> tuple[Any, ...]:
    blanks = (None,) * (len(DECISION_FIELDS) - 1 + (1 if with_verdict else 0))
    return (_account_id(raw), *blanks, _error(code, message, errors))


# ------------------------------------------------------------------ on the driver


def result_schema(view: str, keep: Sequence[StructField] = ()) -> StructType:
    """The schema of :func:`evaluate`'s result for a view (with the kept input columns)."""
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        MapType,
        StringType,
        StructField,
        StructType,
    )

    text = StringType()
    ref = StructType(
        [StructField("name", text), StructField("version", text), StructField("digest", text)]
    )
    fields = [
        *keep,
        StructField("account_id", text),
        StructField("ruleset", ref),
        StructField("qualification", text),
        StructField("score", DoubleType()),
        StructField("segments", ArrayType(text, False)),
        StructField("stage", text),
        StructField("missing_facts", ArrayType(text, False)),
        StructField("outcomes", MapType(text, text, False)),
        StructField("points", MapType(text, DoubleType(), True)),
        StructField("severities", MapType(text, text, False)),
        StructField("scopes", MapType(text, text, False)),
    ]
    if view != "decision":
        fields.append(StructField("verdict", text))
    fields.append(StructField("error", text))
    return StructType(fields)


def evaluate(
    df: DataFrame,
    rulesets: Path | str | Mapping[str, str] | None = None,
    ruleset: str = "key-account",
    view: str = "decision",
    *,
    json_column: str | None = None,
    keep: Sequence[str] = (),
) -> DataFrame:
    """One result row per row of `df`: the decision fields, the verdict (other views), error.

    The facts are `df`'s columns (nulls are absent facts), or with `json_column` the JSON
    text of one account per row (as in a JSON Lines file read with ``spark.read.text``).
    `keep` names input columns copied unchanged to the result (a key, a line number); they
    are not facts. Lazy, like any transformation: nothing runs before an action.
    """
    for name in (*keep, *([json_column] if json_column else [])):
        if name not in df.columns:
            raise ValueError(f"no column `{name}` in the DataFrame (columns: {df.columns})")
    if json_column is not None:  # only what the executors read travels to them
        df = df.select(*dict.fromkeys([*keep, json_column]))
    return evaluate_rdd(
        df.rdd,
        tuple(df.columns),
        rulesets,
        ruleset,
        view,
        json_column=json_column,
        keep=[df.schema[k] for k in keep],
    )


def evaluate_rdd(
    rows: RDD[Any],
    columns: Sequence[str],
    rulesets: Path | str | Mapping[str, str] | None = None,
    ruleset: str = "key-account",
    view: str = "decision",
    *,
    json_column: str | None = None,
    keep: Sequence[StructField] = (),
) -> DataFrame:
    """:func:`evaluate` over an RDD of tuples whose positions are named by `columns`.

    For input that is already in Python (lines numbered by ``zipWithIndex``): the rows
    cross into the Python workers once instead of twice. `keep` gives the kept columns'
    types; their names must be in `columns`.
    """
    from pyspark.sql import SparkSession

    if view not in VIEWS:
        raise ValueError(f"unknown view `{view}` (use one of {', '.join(VIEWS)})")
    kept = tuple(f.name for f in keep)
    for name in (*kept, *([json_column] if json_column else [])):
        if name not in columns:
            raise ValueError(f"no column `{name}` in the input (columns: {list(columns)})")
    shipped = ship(rulesets, ruleset)
    fn = PartitionEvaluator(shipped, view, tuple(columns), kept, json_column)
    spark = SparkSession.builder.getOrCreate()  # the session of the rows' SparkContext
    return spark.createDataFrame(
        rows.mapPartitions(fn), result_schema(view, keep), verifySchema=False
    )


def error_counts(result: DataFrame) -> dict[str, int]:
    """How many rows of an :func:`evaluate` result were not decided, by error code."""
    from pyspark.sql import functions as F

    rows = (
        result.where(F.col("error").isNotNull())
        .groupBy(F.get_json_object("error", "$.code").alias("code"))
        .count()
        .collect()
    )
    return {str(r["code"]): int(r["count"]) for r in rows}


__all__ = [
    "DECISION_FIELDS",
    "PartitionEvaluator",
    "ShippedRuleset",
    "error_counts",
    "evaluate",
    "evaluate_rdd",
    "prepared",
    "result_schema",
    "ship",
]
