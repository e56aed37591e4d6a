"""HTTP problems (RFC 9457) and the one mapping from errors to them.

The tree, drawn once::

    ApiError                         raised by the HTTP layer itself
    ├── MalformedRequest      400    body is not JSON / not UTF-8 / too deeply nested;
    │                                the HTTP request itself is broken (api/server.py)
    ├── Unauthorized          401    missing or wrong bearer token
    ├── Forbidden             403    admin endpoints without KAQ_ADMIN_TOKEN (studio: without
    │                                KAQ_EDITOR_TOKEN or KAQ_ADMIN_TOKEN)
    ├── NotFound              404    unknown ruleset or decision
    ├── Conflict              409    studio save on a stale base digest (someone saved meanwhile)
    ├── RequestTimeout        408    body not sent within its time (slow client)
    ├── PayloadTooLarge       413    body (or NDJSON line) over its cap
    ├── UnsupportedMediaType  415    not application/json (or x-ndjson where allowed)
    ├── InvalidBody           422    well-formed JSON of the wrong shape; `errors[].loc`
    ├── RulesetRejected       422    studio: an edited source that does not validate or fails
    │                                its own test cases; `diagnostics`, `failures`
    └── ServiceUnavailable    503    no rulesets loaded yet, decision log unreachable

    engine.KaqError                  raised by engine/, mapped by `problem_for`
    ├── RulesetError          400    (admin reload) with every diagnostic
    ├── FactsError            422    `errors[].loc` names the fact
    └── InternalError         500    kaq failed on valid facts: `urn:kaq:problem:internal`,
        └── EvaluationError,         logged with its traceback, counted like every 500
            EngineError

Anything else reaching `problem_for` is a bug too: it becomes a logged 500. These two
are the only places a 500 is produced.

Not an error at all: the client leaving (Starlette's `ClientDisconnect`, see
`api/client.py`). Nobody is there to answer; the request ends quietly, without
a traceback, and is counted as 499.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse, Response

logger = logging.getLogger("kaq.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem object as plain data."""
    body: dict[str, Any] = {
        "type": f"urn:kaq:problem:{slug}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [_clean_error(e) for e in errors]
    body.update(extra)
    return body


def _clean_error(error: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "loc": [p if isinstance(p, int | str) else str(p) for p in error.get("loc", ())],
        "msg": str(error.get("msg", "")),
    }
    if error.get("type"):
        out["type"] = str(error["type"])
    return out


class ApiError(Exception):
    """An error the HTTP layer answers with a problem; subclasses fix status and slug."""

    status = 400
    slug = "bad-request"
    title: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        """This error as a problem object."""
        return problem(
            self.status, self.slug, self.detail, title=self.title, errors=self.errors, **self.extra
        )


class MalformedRequest(ApiError):
    status, slug, title = 400, "malformed-request", "Malformed request"


class Unauthorized(ApiError):
    status, slug, title = 401, "unauthorized", "Missing or invalid bearer token"


class Forbidden(ApiError):
    status, slug, title = 403, "admin-disabled", "Admin endpoints are disabled"


class StudioDisabled(Forbidden):
    slug, title = "studio-disabled", "The studio is disabled"


class NotFound(ApiError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ApiError):
    status, slug, title = 409, "conflict", "Someone saved meanwhile"


class RequestTimeout(ApiError):
    status, slug, title = 408, "request-timeout", "Request not received in time"


class PayloadTooLarge(ApiError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidBody(ApiError):
    status, slug, title = 422, "invalid-body", "Invalid request body"


class RulesetRejected(ApiError):
    status, slug, title = 422, "ruleset-rejected", "The ruleset does not validate"


class ServiceUnavailable(ApiError):
    status, slug, title = 503, "unavailable", "Service unavailable"


def problem_for(exc: BaseException, *, log: bool = True) -> dict[str, Any]:
    """Map any exception to a problem object; 500s are logged with their traceback.

    `log=False` when the same exception will be answered (and logged) by the handler.
    """
    # Imported here so that importing api.errors stays cheap and does not load durable_rules.
    from engine.errors import FactsError, InternalError, KaqError, RulesetError

    if isinstance(exc, ApiError):
        return exc.to_problem()
    if isinstance(exc, FactsError):
        return problem(
            422,
            "invalid-facts",
            "The account facts do not validate against the ruleset.",
            title="Invalid facts",
            errors=exc.errors,
            code=exc.code,
        )
    if isinstance(exc, RulesetError):
        return problem(
            400,
            "invalid-ruleset",
            f"{len(exc.diagnostics)} problem(s) in the rulesets; the running rulesets stay.",
            title="Invalid ruleset",
            errors=[
                {"loc": [d.file, d.line, d.col], "msg": str(d), "type": d.code}
                for d in exc.diagnostics
            ],
            diagnostics=[d.to_dict() for d in exc.diagnostics],
            code=exc.code,
        )
    if isinstance(exc, InternalError):
        if log:
            logger.error("internal error on valid input: %s", exc, exc_info=exc)
        return problem(
            500,
            "internal",
            f"kaq failed to evaluate valid facts; the failure has been logged. ({exc.code}: {exc})",
            title="Internal error",
            code=exc.code,
        )
    if isinstance(exc, KaqError):
        return problem(422, "kaq-error", str(exc), code=exc.code)
    if log:
        logger.error("unhandled error", exc_info=exc)
    return problem(500, "internal", "An unexpected error occurred; it has been logged.")


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and Infinity are refused, never written."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class RawJSON(Response):
    """A JSON response whose body is already serialised (the service makes the bytes once)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        assert isinstance(content, bytes | bytearray | memoryview)
        return bytes(content)


class JSONBytes(JSONResponse):
    """A JSON response serialised with `dumps` (a JSONResponse, so that OpenAPI declares its
    body as JSON, not as a string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A problem object as an application/problem+json response."""
    return Response(
        dumps(body), status_code=body["status"], headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )
