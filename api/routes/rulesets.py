"""GET /v1/rulesets[/{name}[/schema]] and POST /v1/admin/reload."""

from __future__ import annotations

import hmac
import os
import socket
from typing import Any

from fastapi import APIRouter, Request

from engine import PreparedRuleset

from ..errors import Forbidden, JSONBytes, Unauthorized
from ..openapi import problems
from ..registry import Snapshot
from ..schemas import ReloadResponse, RulesetDetail, RulesetList
from ..state import AppState, state_of

router = APIRouter(tags=["rulesets"])


def _when(rs: PreparedRuleset) -> str:
    return rs.loaded_at.isoformat()


def summary(rs: PreparedRuleset) -> dict[str, Any]:
    """The listing entry of one ruleset."""
    return {
        "name": rs.name,
        "version": rs.version,
        "digest": rs.digest,
        "rules": len(rs.rules),
        "loaded_at": _when(rs),
    }


def _listing(snap: Snapshot) -> list[dict[str, Any]]:
    return [summary(snap.rulesets[name]) for name in sorted(snap.rulesets)]


def _source(state: AppState, snap: Snapshot) -> dict[str, Any]:
    """Which version of which source this worker serves, and which worker it is.

    Behind a load balancer, each answer says what the replica and worker that gave it
    serves: `digest` is the digest of the whole published set (a version), each ruleset's
    own digest is in the listing beside it.
    """
    origin = snap.origin.to_dict() if snap.origin is not None else {}
    origin.pop("source", None)
    return {
        **state.rulesets.source.describe(),
        **origin,
        "served_by": {"host": socket.gethostname(), "pid": os.getpid()},
    }


@router.get(
    "/v1/rulesets",
    summary="The loaded rulesets",
    responses={200: {"model": RulesetList}, **problems(503)},
    response_class=JSONBytes,
)
async def list_rulesets(request: Request) -> JSONBytes:
    with state_of(request).registry.acquire() as snap:
        return JSONBytes(
            {
                "rulesets": _listing(snap),
                "generation": snap.generation,
                "loaded_at": snap.loaded_at.isoformat(),
                "source": _source(state_of(request), snap),
            }
        )


@router.get(
    "/v1/rulesets/{name}",
    summary="One ruleset as JSON, with its fact schema",
    responses={200: {"model": RulesetDetail}, **problems(404, 503)},
    response_class=JSONBytes,
)
async def get_ruleset(request: Request, name: str) -> JSONBytes:
    with state_of(request).registry.acquire() as snap:
        rs = snap.get(name)
        return JSONBytes(
            {
                **rs.describe(),
                "name": rs.name,
                "version": rs.version,
                "digest": rs.digest,
                "loaded_at": _when(rs),
                "facts_schema": rs.facts_schema(),
            }
        )


@router.get(
    "/v1/rulesets/{name}/schema",
    summary="JSON Schema of the ruleset's facts",
    responses={
        200: {"content": {"application/schema+json": {"schema": {"type": "object"}}}},
        **problems(404, 503),
    },
)
async def get_ruleset_schema(request: Request, name: str) -> JSONBytes:
    with state_of(request).registry.acquire() as snap:
        return JSONBytes(snap.get(name).facts_schema(), media_type="application/schema+json")


def require_admin(request: Request, state: AppState) -> None:
    """403 when admin is disabled, 401 unless the bearer token matches."""
    if not state.settings.admin_enabled:
        raise Forbidden("Set KAQ_ADMIN_TOKEN to enable the admin endpoints.")
    assert state.settings.admin_token is not None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = state.settings.admin_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized(
            "Send `Authorization: Bearer <KAQ_ADMIN_TOKEN>`.",
            headers={"WWW-Authenticate": 'Bearer realm="kaq-admin"'},
        )


@router.post(
    "/v1/admin/reload",
    tags=["admin"],
    summary="Reload every ruleset from disk, all or nothing",
    responses={200: {"model": ReloadResponse}, **problems(400, 401, 403, 503)},
    response_class=JSONBytes,
    openapi_extra={"security": [{"admin": []}]},
)
async def reload_rulesets(request: Request) -> JSONBytes:
    """400 with every diagnostic when a ruleset is invalid; the running ones keep serving.

    On the folder source, this worker compiles and binds the folder, then makes it the
    run's generation, which every other worker of this `kaq serve` loads within a poll
    (0.25 s); on the database source, it loads the newest published version (the others
    follow it by themselves).
    """
    state = state_of(request)
    require_admin(request, state)
    try:
        snap = await state.rulesets.reload()
    except Exception:
        state.metrics.reloads.labels("failed").inc()
        raise
    state.metrics.reloads.labels("ok").inc()
    return JSONBytes(
        {
            "generation": snap.generation,
            "rulesets": _listing(snap),
            "source": _source(state, snap),
        }
    )
