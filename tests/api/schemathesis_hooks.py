"""Schemathesis hooks for kaq's document: NDJSON bodies both ways.

Loaded by the schemathesis run of test_api_openapi.py (`SCHEMATHESIS_HOOKS=<this file>`).
The document describes an NDJSON body as the array of its lines (`BatchLines`, the way
OpenAPI 3.2 models sequential media types); these hooks put such an array on the wire
as lines and read streamed answers back into one, so that schemathesis generates
NDJSON requests and checks their answers against `BatchResultLines`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from schemathesis.checks import negative_data_rejection

NDJSON = "application/x-ndjson"
# Each NDJSON request sent appends a line here, so the test can tell they were made.
SENT_LOG = os.environ.get("KAQ_TEST_NDJSON_SENT")


@schemathesis.serializer(NDJSON)
def to_ndjson(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """The array of lines as NDJSON text; any other value as the single line it would be."""
    items = value if isinstance(value, list) else [value]
    body = b"".join(
        json.dumps(item, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")
        + b"\n"
        for item in items
    )
    if SENT_LOG:
        with open(SENT_LOG, "a") as f:
            f.write(f"{len(items)}\n")
    return {"data": body}


@schemathesis.deserializer(NDJSON)
def from_ndjson(ctx: schemathesis.DeserializationContext, response: Any) -> list[Any]:
    """A streamed answer as the array of its lines, to check against `BatchResultLines`."""
    return [json.loads(line) for line in response.content.splitlines() if line.strip()]


def _only_the_body_is_negative(case: schemathesis.Case) -> bool:
    meta = case.meta
    if meta is None:
        return False
    negative = {loc.name for loc, c in meta.components.items() if c.mode.is_negative}
    return negative == {"BODY"}


@schemathesis.check
def negative_data_rejection_on_the_wire(
    ctx: schemathesis.CheckContext, response: Any, case: schemathesis.Case
) -> bool | None:
    """`negative_data_rejection`, except an NDJSON body whose only flaw is not being an array.

    The one way to break `BatchLines` is to send something other than a sequence of
    lines, and NDJSON text is always one: a lone value goes on the wire as a one-line
    sequence, a valid request. (Every other negative case is still checked.)
    """
    if case.media_type == NDJSON and _only_the_body_is_negative(case):
        return None
    return negative_data_rejection(ctx, response, case)
