"""POST /v1/evaluate, /v1/evaluate/batch (JSON or NDJSON), /v1/portfolio/evaluate."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from engine.hints import suggest

from ..bodies import JSON, NDJSON, media_type, ndjson_lines, parse_json, read_capped
from ..client import ensure_client
from ..errors import ApiError, InvalidBody, JSONBytes, RawJSON, dumps, problem_for
from ..openapi import FACT_EXAMPLES, REF, json_body, problems
from ..schemas import AnyView, BatchResponse, PortfolioResponse
from ..service import Item, account_id_of
from ..state import AppState, state_of

log = logging.getLogger("kaq.api")
router = APIRouter(prefix="/v1", tags=["evaluate"])

RulesetName = Annotated[
    str | None,
    Query(description="Ruleset to evaluate against (default `key-account`).", max_length=200),
]
View = Annotated[
    Literal["full", "summary", "decision"],
    Query(
        description="`full` (everything), `summary` (no trace, no comparisons, no criteria "
        "facts) or `decision` (the decision alone, no texts). The decision is the same in "
        "every view, and the log keeps what makes the full verdict again."
    ),
]


def _known_query(request: Request, allowed: tuple[str, ...]) -> None:
    """422 for a query parameter the operation does not take: `?veiw=decision` would
    otherwise be answered silently in the full view."""
    unknown = [k for k in request.query_params if k not in allowed]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", k),
                    "msg": "unknown query parameter"
                    + (f" ({hint})" if (hint := suggest(k, allowed)) else "")
                    + f"; this operation takes {', '.join(allowed)}",
                    "type": "extra_forbidden",
                }
                for k in unknown
            ]
        )


def _object(value: Any, loc: list[Any], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidBody(
            f"{what} must be a JSON object.", errors=[{"loc": loc, "msg": "not an object"}]
        )
    return value


def _envelope(data: Any, allowed: set[str], state: AppState) -> list[Any]:
    body = _object(data, [], "The body")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidBody(
            "Unknown fields in the body.",
            errors=[
                {"loc": [k], "msg": "unknown field", "type": "extra_forbidden"} for k in unknown
            ],
        )
    accounts = body.get("accounts")
    if not isinstance(accounts, list):
        raise InvalidBody(
            "`accounts` must be a list of facts objects.",
            errors=[{"loc": ["accounts"], "msg": "a list is required", "type": "list_type"}],
        )
    cap = state.settings.max_batch_items
    if len(accounts) > cap:
        raise InvalidBody(
            f"At most {cap} accounts per request; split the batch or send NDJSON.",
            errors=[{"loc": ["accounts"], "msg": f"at most {cap} items", "type": "too_long"}],
        )
    return accounts


@router.post(
    "/evaluate",
    summary="Evaluate one account",
    responses={200: {"model": AnyView}, **problems(400, 404, 408, 413, 415, 422, 503)},
    response_class=RawJSON,
    openapi_extra=json_body("Facts", FACT_EXAMPLES),
)
async def evaluate(request: Request, ruleset: RulesetName = None, view: View = "full") -> RawJSON:
    """One account's facts → one verdict, logged under its `decision_id`."""
    _known_query(request, ("ruleset", "view"))
    state = state_of(request)
    media_type(request, (JSON,))
    data = parse_json(
        await read_capped(request, state.settings.max_body_bytes, state.pace), state.limits
    )
    facts = _object(data, [], "The facts")
    name = ruleset or state.settings.default_ruleset
    return RawJSON(await state.service.evaluate(name, facts, view))


@router.post(
    "/evaluate/batch",
    summary="Evaluate many accounts (JSON, or NDJSON streamed)",
    responses={
        200: {
            "model": BatchResponse,
            "content": {"application/x-ndjson": {"schema": {"$ref": REF + "BatchResultLines"}}},
        },
        **problems(400, 404, 408, 413, 415, 422, 503),
    },
    response_class=JSONBytes,
    openapi_extra=json_body(
        "BatchRequest",
        **{"application/x-ndjson": {"schema": {"$ref": REF + "BatchLines"}}},
    ),
)
async def evaluate_batch(request: Request, ruleset: RulesetName = None, view: View = "full") -> Any:
    """Accounts in order; an invalid one gets an `error` entry in its place."""
    _known_query(request, ("ruleset", "view"))
    state = state_of(request)
    kind = media_type(request, (JSON, NDJSON))
    name = ruleset or state.settings.default_ruleset
    if kind == NDJSON:
        return _stream(request, state, name, view)
    data = parse_json(
        await read_capped(request, state.settings.max_batch_bytes, state.pace), state.limits
    )
    accounts = _envelope(data, {"accounts"}, state)
    items = [
        Item(i, raw)
        if isinstance(raw, dict)
        else Item(
            i,
            raw,
            InvalidBody(
                "A facts entry must be a JSON object.", errors=[{"loc": [], "msg": "not an object"}]
            ),
        )
        for i, raw in enumerate(accounts)
    ]
    body = await state.service.evaluate_batch(
        name, items, state.settings.log_chunk_size, partial(ensure_client, request.scope), view
    )
    return RawJSON(body)


def _stream(request: Request, state: AppState, name: str, view: str) -> StreamingResponse:
    lease = state.registry.hold()
    try:
        rs = lease.snapshot.get(name)
    except ApiError:
        lease.release()
        raise

    async def items() -> AsyncIterator[Item]:
        async for line in ndjson_lines(request, state.settings.max_body_bytes, state.pace):
            if line.error is not None:
                yield Item(line.index, None, line.error)
                continue
            assert line.data is not None
            try:
                facts = _object(parse_json(line.data, state.limits), [], "A line")
            except ApiError as exc:
                yield Item(line.index, None, exc)
            else:
                yield Item(line.index, facts)

    async def body() -> AsyncIterator[bytes]:
        try:
            # A client that leaves stops the stream within the chunk in hand: no more
            # lines read, evaluated or logged for nobody (ClientDisconnect ends it).
            async for results in state.service.stream_batch(
                rs,
                items(),
                state.settings.log_chunk_size,
                partial(ensure_client, request.scope),
                view,
            ):
                yield b"".join(r + b"\n" for r in results)
        except ApiError as exc:  # e.g. the decision log failed: say so on the stream, then stop
            yield dumps({"index": None, "account_id": None, "error": problem_for(exc)}) + b"\n"
        finally:
            lease.release()

    return DuplexStream(body(), media_type=NDJSON)


class DuplexStream(StreamingResponse):
    """A streamed response that reads the request body while it writes.

    Starlette's StreamingResponse listens for a disconnect by calling `receive()`
    itself, which would swallow the request body this response is made from. Here
    the body generator is the only reader: a client that goes away shows up as
    `ClientDisconnect` there.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.body_iterator:
            if not isinstance(chunk, bytes | memoryview):
                chunk = chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": bytes(chunk), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@router.post(
    "/portfolio/evaluate",
    tags=["portfolio"],
    summary="Evaluate a portfolio (policy §7)",
    responses={200: {"model": PortfolioResponse}, **problems(400, 404, 408, 413, 415, 422, 503)},
    response_class=RawJSON,
    openapi_extra=json_body("PortfolioRequest"),
)
async def evaluate_portfolio(request: Request, ruleset: RulesetName = None) -> RawJSON:
    """Every account's verdict, the portfolio findings and the counts."""
    _known_query(request, ("ruleset",))
    state = state_of(request)
    media_type(request, (JSON,))
    data = parse_json(
        await read_capped(request, state.settings.max_batch_bytes, state.pace), state.limits
    )
    accounts = _envelope(data, {"accounts", "portfolio"}, state)
    bad = [
        {"loc": ["accounts", i], "msg": "not an object", "type": "dict_type"}
        for i, raw in enumerate(accounts)
        if not isinstance(raw, dict)
    ]
    if bad:
        raise InvalidBody("Every account must be a JSON object.", errors=bad)
    name = ruleset or state.settings.default_ruleset
    return RawJSON(await state.service.portfolio(name, accounts, data.get("portfolio")))


__all__ = ["account_id_of", "router"]
