"""The studio: its page (`GET /studio`) and its JSON API (api.md § Studio).

Every call of the API needs `Authorization: Bearer` with KAQ_EDITOR_TOKEN or
KAQ_ADMIN_TOKEN (403 when neither is set, 401 when it does not match); the page itself
is public, and asks for the token.
"""

from __future__ import annotations

import hmac
import mimetypes
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from ..bodies import JSON, JsonLimits, media_type, parse_json, read_capped
from ..errors import (
    InvalidBody,
    JSONBytes,
    NotFound,
    ServiceUnavailable,
    StudioDisabled,
    Unauthorized,
)
from ..openapi import problems
from ..state import AppState, state_of
from ..studio import checked_name

router = APIRouter(tags=["studio"])
SAMPLES = 200  # corpus accounts the page offers to try


def require_editor(request: Request, state: AppState) -> str:
    """The role of the bearer token (`editor` or `admin`); 403 when editing is off, else 401."""
    tokens = state.settings.editor_tokens
    if not tokens:
        raise StudioDisabled("Set KAQ_EDITOR_TOKEN (or KAQ_ADMIN_TOKEN) to enable the studio.")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    sent = given.strip().encode()
    for role, expected in tokens.items():
        if scheme.lower() == "bearer" and hmac.compare_digest(sent, expected):
            return role
    raise Unauthorized(
        "Send `Authorization: Bearer <KAQ_EDITOR_TOKEN>` (or the admin token).",
        headers={"WWW-Authenticate": 'Bearer realm="kaq-studio"'},
    )


async def _body(request: Request, state: AppState, allowed: set[str]) -> dict[str, Any]:
    media_type(request, (JSON,))
    # a ruleset text is one long string: the engine's own cap (MAX_SOURCE_BYTES) says
    # "too large" as a diagnostic; the body cap bounds everything else
    cap = state.settings.studio_max_source_bytes
    limits = JsonLimits(state.settings.max_json_depth, cap)
    data = parse_json(await read_capped(request, cap, state.pace), limits)
    if not isinstance(data, dict):
        raise InvalidBody(
            "The body must be a JSON object.", errors=[{"loc": [], "msg": "not an object"}]
        )
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidBody(
            "Unknown fields in the body.",
            errors=[
                {"loc": [k], "msg": "unknown field", "type": "extra_forbidden"} for k in unknown
            ],
        )
    return data


def _string(data: dict[str, Any], key: str, *, required: bool = True, cap: int = 0) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidBody(
            f"`{key}` must be a string.",
            errors=[{"loc": [key], "msg": "a string is required", "type": "string_type"}],
        )
    if cap and len(value) > cap:
        raise InvalidBody(
            f"`{key}` is longer than {cap} characters.",
            errors=[{"loc": [key], "msg": f"at most {cap} characters", "type": "too_long"}],
        )
    return value


def _name(data: dict[str, Any], state: AppState) -> str:
    return checked_name(data.get("name", state.settings.default_ruleset))


def _who(data: dict[str, Any], role: str) -> str:
    person = _string(data, "who", required=False, cap=100)
    return f"{person.strip()} ({role})" if person and person.strip() else role


def _facts(value: Any, loc: list[Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidBody(
            "The facts must be a JSON object.",
            errors=[{"loc": loc, "msg": "not an object", "type": "dict_type"}],
        )
    return value


def _ok(schema: dict[str, Any], *codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=`: the 200 body's JSON Schema, and the problems the operation answers."""
    return {200: {"content": {"application/json": {"schema": schema}}}, **problems(*codes)}


_STR = {"type": "string"}
_DIAGNOSTIC = {
    "type": "object",
    "required": ["line", "col", "code", "severity", "message"],
    "properties": {
        "line": {"type": "integer"},
        "col": {"type": "integer"},
        "code": _STR,
        "severity": {"enum": ["error", "warning"]},
        "message": _STR,
        "hint": {"type": ["string", "null"]},
    },
}
CHECK = {
    "type": "object",
    "required": ["ok", "diagnostics"],
    "properties": {
        "ok": {"type": "boolean"},
        "digest": {"type": ["string", "null"]},
        "diagnostics": {"type": "array", "items": _DIAGNOSTIC},
    },
}
VERSIONS = {
    "type": "object",
    "required": ["name", "versions"],
    "properties": {
        "name": _STR,
        "versions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["digest", "published_at", "who", "note", "current"],
                "properties": {
                    "digest": _STR,
                    "version": {},
                    "published_at": {"type": "string", "format": "date-time"},
                    "who": _STR,
                    "note": _STR,
                    "current": {"type": "boolean"},
                },
            },
        },
    },
}
SAMPLES_BODY = {
    "type": "object",
    "required": ["accounts"],
    "properties": {"accounts": {"type": "array", "items": {"type": "object"}}},
}


@router.post(
    "/v1/studio/check",
    summary="Diagnostics of an edited ruleset text (never a 500, whatever the text)",
    responses=_ok(CHECK, 400, 401, 403, 413, 415, 422),
    response_class=JSONBytes,
)
async def studio_check(request: Request) -> JSONBytes:
    """`{"name", "source"}` → `{"ok", "digest", "diagnostics"}`; `"form": true` adds the form."""
    state = state_of(request)
    require_editor(request, state)
    data = await _body(request, state, {"name", "source", "form"})
    name, source = _name(data, state), _string(data, "source")
    result = await state.studio.check(name, source)
    body: dict[str, Any] = {
        "ok": result.ok,
        "digest": result.digest,
        "diagnostics": result.diagnostics,
    }
    if data.get("form") is True:
        body["form"] = await state.studio.form(result, source)
    return JSONBytes(body)


@router.post(
    "/v1/studio/evaluate",
    summary="The verdict of an edited, unsaved ruleset (nothing is logged)",
    responses=problems(400, 401, 403, 404, 413, 415, 422),
    response_class=JSONBytes,
)
async def studio_evaluate(request: Request) -> JSONBytes:
    """`{"source", "facts", "view"}` → the verdict; 422 with diagnostics for a bad text."""
    state = state_of(request)
    require_editor(request, state)
    data = await _body(request, state, {"name", "source", "facts", "view"})
    name, source = _name(data, state), _string(data, "source")
    view = data.get("view", "full")
    facts = _facts(data.get("facts"), ["facts"])
    return JSONBytes(await state.studio.evaluate(name, source, facts, view))


@router.post(
    "/v1/studio/impact",
    summary="Impact of the edited ruleset on a corpus: the `kaq diff --format json` report",
    responses=problems(400, 401, 403, 404, 413, 415, 422),
    response_class=JSONBytes,
)
async def studio_impact(request: Request) -> JSONBytes:
    """`{"source", "corpus"}`: `"shipped"` or a list of facts objects."""
    state = state_of(request)
    require_editor(request, state)
    data = await _body(request, state, {"name", "source", "corpus", "top"})
    name, source = _name(data, state), _string(data, "source")
    corpus = data.get("corpus", "shipped")
    if corpus != "shipped":
        if not isinstance(corpus, list) or not corpus:
            raise InvalidBody(
                '`corpus` must be "shipped" or a non-empty list of facts objects.',
                errors=[{"loc": ["corpus"], "msg": "not a corpus", "type": "corpus"}],
            )
        cap = state.settings.max_batch_items
        if len(corpus) > cap:
            raise InvalidBody(
                f"At most {cap} accounts in an uploaded corpus.",
                errors=[{"loc": ["corpus"], "msg": f"at most {cap} items", "type": "too_long"}],
            )
        for i, item in enumerate(corpus):
            _facts(item, ["corpus", i])
    top = data.get("top", 10)
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 200:
        raise InvalidBody(
            "`top` must be an integer from 0 to 200.",
            errors=[{"loc": ["top"], "msg": "0 to 200", "type": "int_range"}],
        )
    return JSONBytes(await state.studio.impact(name, source, corpus, top))


@router.post(
    "/v1/studio/save",
    summary="Save an edited ruleset: validated, its cases passed, on the served base (else 409)",
    responses=problems(400, 401, 403, 404, 409, 413, 415, 422),
    response_class=JSONBytes,
)
async def studio_save(request: Request) -> JSONBytes:
    """`{"name", "source", "base_digest", "note"}` → the new digest; reloads all or nothing."""
    state = state_of(request)
    role = require_editor(request, state)
    data = await _body(request, state, {"name", "source", "base_digest", "note", "who", "tests"})
    name, source = _name(data, state), _string(data, "source")
    base = _string(data, "base_digest", cap=200)
    note = _string(data, "note", required=False, cap=2000) or ""
    tests = _string(data, "tests", required=False)
    saved = await state.studio.save(
        name, source, base, who=_who(data, role), note=note, tests=tests
    )
    return JSONBytes(saved)


@router.post(
    "/v1/studio/revert",
    summary="Bring a saved version back, through the same checks as a save",
    responses=problems(400, 401, 403, 404, 409, 413, 415, 422),
    response_class=JSONBytes,
)
async def studio_revert(request: Request) -> JSONBytes:
    """`{"name", "digest"}` (optionally `base_digest`, `note`) → the new digest."""
    state = state_of(request)
    role = require_editor(request, state)
    data = await _body(request, state, {"name", "digest", "base_digest", "note", "who"})
    name = _name(data, state)
    digest = _string(data, "digest", cap=200)
    base = _string(data, "base_digest", required=False, cap=200)
    note = _string(data, "note", required=False, cap=2000) or ""
    return JSONBytes(await state.studio.revert(name, digest, base, who=_who(data, role), note=note))


@router.get(
    "/v1/rulesets/{name}/versions",
    tags=["rulesets"],
    summary="The saved versions of a ruleset, newest first",
    responses=_ok(VERSIONS, 401, 403, 404),
    response_class=JSONBytes,
)
async def ruleset_versions(request: Request, name: str) -> JSONBytes:
    state = state_of(request)
    require_editor(request, state)
    name = checked_name(name)
    return JSONBytes({"name": name, "versions": await state.studio.versions(name)})


@router.get(
    "/v1/studio/rulesets/{name}/source",
    summary="The text of a served ruleset, to edit (comments and layout as saved)",
    responses=problems(401, 403, 404),
    response_class=JSONBytes,
)
async def studio_source(request: Request, name: str) -> JSONBytes:
    state = state_of(request)
    require_editor(request, state)
    source, digest = state.studio.served(checked_name(name))
    tests = await state.studio.tests_text(name)
    return JSONBytes({"name": name, "digest": digest, "source": source, "tests": tests})


@router.get(
    "/v1/studio/samples",
    summary="Accounts of the shipped corpus to try",
    responses=_ok(SAMPLES_BODY, 401, 403),
    response_class=JSONBytes,
)
async def studio_samples(request: Request) -> JSONBytes:
    state = state_of(request)
    require_editor(request, state)
    import asyncio

    from engine.tools.studio import shipped_corpus

    accounts = await asyncio.to_thread(shipped_corpus)
    return JSONBytes({"accounts": accounts[:SAMPLES]})


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.post(
    "/v1/studio/params/export",
    summary="The params and messages of a ruleset text as an XLSX workbook",
    responses={200: {"content": {XLSX: {}}}, **problems(400, 401, 403, 413, 415, 422)},
)
async def studio_params_export(request: Request) -> Response:
    """`{"name", "source"}` → the workbook (`kaq params export`)."""
    import asyncio

    from engine.tools.sheet import export_workbook

    state = state_of(request)
    require_editor(request, state)
    data = await _body(request, state, {"name", "source"})
    name, source = _name(data, state), _string(data, "source")
    body = await asyncio.to_thread(export_workbook, source)
    return Response(
        body,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}-params.xlsx"'},
    )


@router.post(
    "/v1/studio/params/import",
    summary="A workbook's params and messages written into a ruleset text (nothing saved)",
    responses=problems(400, 401, 403, 413, 415, 422),
    response_class=JSONBytes,
)
async def studio_params_import(request: Request) -> JSONBytes:
    """`{"name", "source", "workbook"}` (base64 XLSX) → `{"ok", "source", "changed",
    "problems": [{"sheet", "row", "column", "message"}], "diagnostics"}`."""
    import asyncio
    import base64
    import binascii

    from engine.tools.sheet import import_workbook

    state = state_of(request)
    require_editor(request, state)
    data = await _body(request, state, {"name", "source", "workbook"})
    name, source = _name(data, state), _string(data, "source")
    try:
        workbook = base64.b64decode(_string(data, "workbook"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBody(
            "`workbook` must be the XLSX file in base64.",
            errors=[{"loc": ["workbook"], "msg": "not base64", "type": "base64"}],
        ) from None
    result = await asyncio.to_thread(import_workbook, source, workbook, name)
    return JSONBytes(
        {
            "ok": result.ok,
            "source": result.text,
            "changed": result.changed,
            "problems": [p.to_dict() for p in result.problems],
            "diagnostics": result.diagnostics,
        }
    )


# --------------------------------------------------------------------------- the page


def assets_folder(state: AppState | None) -> Path:
    """Where the built page is: KAQ_STUDIO_ASSETS, else studio/dist of the checkout."""
    if state is not None and state.settings.studio_assets is not None:
        return state.settings.studio_assets
    return Path(__file__).resolve().parents[2] / "studio" / "dist"


def _asset(request: Request, name: str) -> Response:
    state = getattr(request.app.state, "kaq", None)
    folder = assets_folder(state)
    if not (folder / "index.html").is_file():
        raise ServiceUnavailable(
            f"The studio page is not built ({folder} has no index.html): run `make studio`, "
            "which needs node and npm."
        )
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        raise NotFound(f"No studio file {name!r}.")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "no-cache"})


@router.get("/studio", include_in_schema=False)
async def studio_page(request: Request) -> Response:
    return _asset(request, "index.html")


@router.get("/studio/assets/{name}", include_in_schema=False)
async def studio_asset(request: Request, name: str) -> Response:
    return _asset(request, f"assets/{name}")
