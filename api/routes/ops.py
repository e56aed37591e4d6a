"""GET /healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import JSONBytes, ServiceUnavailable
from ..openapi import problems
from ..schemas import Health, Readiness
from ..state import state_of

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz", summary="Liveness", responses={200: {"model": Health}}, response_class=JSONBytes
)
async def healthz() -> JSONBytes:
    return JSONBytes({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: rulesets loaded and decision log writable",
    responses={200: {"model": Readiness}, **problems(503)},
    response_class=JSONBytes,
)
async def readyz(request: Request) -> JSONBytes:
    state = state_of(request)
    snap = state.registry.current
    if snap is None or not snap.rulesets:
        raise ServiceUnavailable("No rulesets are loaded.")
    await state.decision_log.check_writable()
    return JSONBytes(
        {
            "status": "ready",
            "rulesets": len(snap.rulesets),
            "generation": snap.generation,
            "decision_log": state.decision_log.kind,
            "ruleset_source": state.rulesets.source.kind,
            "ruleset_version": snap.origin.version if snap.origin is not None else None,
            "ruleset_digest": snap.origin.digest if snap.origin is not None else None,
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (all workers under `kaq serve --workers N`)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **problems(503)},
)
async def metrics(request: Request) -> Response:
    body, content_type = state_of(request).metrics.render()
    return Response(body, media_type=content_type)
