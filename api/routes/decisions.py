"""GET /v1/decisions/{decision_id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import JSONBytes, NotFound
from ..openapi import problems
from ..schemas import StoredDecision
from ..state import state_of

router = APIRouter(tags=["decisions"])


@router.get(
    "/v1/decisions/{decision_id}",
    summary="A stored verdict from the decision log",
    responses={200: {"model": StoredDecision}, **problems(404, 503)},
    response_class=JSONBytes,
)
async def get_decision(request: Request, decision_id: str) -> JSONBytes:
    state = state_of(request)
    found = await state.service.decision(decision_id) if len(decision_id) <= 64 else None
    if found is None:
        raise NotFound(f"No decision {decision_id[:64]!r} in the decision log.")
    return JSONBytes(found)
