"""Reading request bodies within limits: media type, size caps, time, strict JSON, NDJSON lines.

Everything here runs before a byte reaches the engine, so that no malformed
input can get further than a 4xx.

Time: a client may not hold a request open by sending its body slowly (a
slow-loris). The time kaq spends waiting for body bytes may not exceed
`BodyPace.timeout` plus one second per `BodyPace.min_rate` bytes received: a
body of any size is fine at that average rate, a byte a second is answered
408 after about `timeout`. Only time spent waiting on the client counts, not
time kaq spends evaluating what it has already read. (Headers are bounded
below the app, in `api/server.py`.)
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from .errors import (
    InvalidBody,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

JSON = "application/json"
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class BodyPace:
    """How long a body may keep kaq waiting: `timeout` seconds plus 1 s per `min_rate` bytes."""

    timeout: float
    min_rate: float


@dataclass(frozen=True)
class JsonLimits:
    """Structural limits of an accepted JSON document."""

    max_depth: int
    max_string_chars: int


def media_type(request: Request, allowed: tuple[str, ...]) -> str:
    """The request's media type if it is one of `allowed`, else 415."""
    raw = request.headers.get("content-type", "")
    kind, _, params = raw.partition(";")
    kind = kind.strip().lower()
    if kind not in allowed:
        shown = f"`{kind}`" if kind else "no Content-Type"
        raise UnsupportedMediaType(f"{shown}: send {' or '.join(allowed)}.")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType("Only UTF-8 bodies are accepted.")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding `{encoding}` is not supported: send the body uncompressed."
        )
    return kind


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MalformedRequest("Content-Length is not a number.") from None


async def paced_stream(request: Request, pace: BodyPace) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, or 408 once the client is slower than `pace` allows."""
    loop = asyncio.get_running_loop()
    chunks = request.stream()
    waited = 0.0
    received = 0
    while True:
        budget = pace.timeout + received / pace.min_rate - waited
        started = loop.time()
        try:
            async with asyncio.timeout(budget):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            await chunks.aclose()
            raise RequestTimeout(
                f"The body arrived slower than {pace.min_rate:g} bytes a second after "
                f"{pace.timeout:g} s ({received} bytes in all).",
                headers={"connection": "close"},
            ) from None
        waited += loop.time() - started
        received += len(chunk)
        yield chunk


async def read_capped(request: Request, limit: int, pace: BodyPace) -> bytes:
    """The whole body, or 413 as soon as it exceeds `limit` bytes (408 if sent too slowly)."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {limit}.", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in paced_stream(request, pace):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body exceeds the limit of {limit} bytes.", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return out


# A key ends with a quote, optional white space and a colon. Counting these in the raw text
# gives at least the number of keys the document holds (a string value holding `":` adds
# one): equal to the keys parsed exactly when no key was given twice and no string fooled
# the count.
_KEY_END = re.compile(rb'"[ \t\n\r]*:')
# orjson reads an integer beyond 64 bits as a float, which is then at least 2**64; the
# strict reader keeps it exact. A float that large (an integer past 64 bits, or a plain
# 1e19) is read again by the strict reader.
_BIG = float(2**63)


def parse_json(body: bytes, limits: JsonLimits) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, bounded depth and strings.

    Read by orjson when the document is plainly within the rules (most are: the check costs
    a fraction of the parse); anything else, or any doubt, is read again by the strict
    reader, whose answer (value or error) is the one given.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _parse_strict(body, limits)
    keys = _plain_keys(data, limits.max_depth, limits.max_string_chars)
    if keys is None or (keys and keys != len(_KEY_END.findall(body))):
        return _parse_strict(body, limits)
    return data


def _plain_keys(data: Any, max_depth: int, max_chars: int) -> int | None:
    """How many object keys `data` holds, or None if any limit is crossed (depth, a string's
    length) or a float is 2**63 or more (see `_BIG`). orjson has already refused invalid
    UTF-8 and unpaired surrogates."""
    keys = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is dict or kind is list:
            if depth >= max_depth:
                return None
            if kind is dict:
                keys += len(value)
                if any(len(key) > max_chars for key in value):
                    return None
                value = value.values()
            for item in value:
                k = type(item)
                if k is str:
                    if len(item) > max_chars:
                        return None
                elif k is dict or k is list:
                    stack.append((item, depth + 1))
                elif k is float and not -_BIG < item < _BIG:
                    return None
        elif kind is str and len(value) > max_chars:
            return None
        elif kind is float and not -_BIG < value < _BIG:
            return None
    return keys


def _parse_strict(body: bytes, limits: JsonLimits) -> Any:
    """The reference reader: every rule checked, with the error that names the problem."""
    if not body.strip():
        raise MalformedRequest("The body is empty; a JSON document is expected.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"The body is not UTF-8: {exc.reason} at byte {exc.start}."
        ) from None
    try:
        data = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"Malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except RecursionError:
        raise MalformedRequest(
            f"The JSON document is nested deeper than {limits.max_depth} levels."
        ) from None
    except ValueError as exc:  # NaN/Infinity, duplicate keys, integers too long to convert
        raise MalformedRequest(f"Malformed JSON: {exc}.") from None
    check_structure(data, limits)
    return data


def check_structure(data: Any, limits: JsonLimits) -> None:
    """Reject too-deep nesting (400) and too-long or invalid strings (422, with `loc`)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            _check_string(value, loc, limits)
        elif isinstance(value, dict | list):
            if len(loc) >= limits.max_depth:
                raise MalformedRequest(
                    f"The JSON document is nested deeper than {limits.max_depth} levels."
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_string(key, (*loc, key), limits)
                    stack.append((item, (*loc, key)))
            else:
                stack.extend((item, (*loc, i)) for i, item in enumerate(value))


def _check_string(value: str, loc: tuple[Any, ...], limits: JsonLimits) -> None:
    if len(value) > limits.max_string_chars:
        raise InvalidBody(
            f"A string is longer than {limits.max_string_chars} characters.",
            errors=[{"loc": list(loc), "msg": f"at most {limits.max_string_chars} characters"}],
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidBody(
                "A string holds an unpaired UTF-16 surrogate escape.",
                errors=[{"loc": list(loc), "msg": "invalid Unicode (unpaired surrogate)"}],
            ) from None


@dataclass(frozen=True)
class Line:
    """A non-blank NDJSON line: its index among such lines, its bytes or why it is unusable."""

    index: int
    data: bytes | None
    error: Exception | None = None


async def ndjson_lines(
    request: Request, max_line_bytes: int, pace: BodyPace
) -> AsyncIterator[Line]:
    """Non-blank lines of the body, read incrementally; an over-long line becomes an error."""
    buffer = bytearray()
    index = 0
    skipping = False  # inside a line already reported as too long
    async for chunk in paced_stream(request, pace):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not skipping:
                buffer += piece
                if len(buffer) > max_line_bytes:
                    yield Line(
                        index,
                        None,
                        PayloadTooLarge(
                            f"Line {index} exceeds the limit of {max_line_bytes} bytes.",
                            limit=max_line_bytes,
                        ),
                    )
                    index += 1
                    buffer.clear()
                    skipping = True
            if end < 0:
                break
            if not skipping and buffer.strip():
                yield Line(index, bytes(buffer))
                index += 1
            buffer.clear()
            skipping = False
            start = end + 1
    if not skipping and buffer.strip():
        yield Line(index, bytes(buffer))
