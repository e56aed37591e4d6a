"""The FastAPI app: `create_app(settings)` builds routes; the lifespan loads everything.

`app = create_app()` below only constructs routes and middleware: settings are
read, rulesets loaded and the decision log opened when the server starts the
app (its lifespan), in each worker process separately.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.tools.gate import check_set

from .client import ClientDisconnect
from .decision_log import DecisionLog
from .engine_thread import on_engine_thread
from .errors import ApiError, problem, problem_for, problem_response
from .metrics import Metrics, MetricsMiddleware
from .openapi import build_openapi
from .registry import Registry, Snapshot
from .routes import decisions, evaluate, ops, rulesets, studio
from .ruleset_source import source_for
from .ruleset_sync import RulesetSync
from .service import Service
from .settings import Settings, get_settings
from .state import AppState
from .studio import Studio

log = logging.getLogger("kaq.api")


class LastResort:
    """Outermost guard: an exception nothing else handled becomes a logged problem 500.

    A client that went away (`ClientDisconnect`) is not one: there is nobody to
    answer and nothing of kaq's to fix, so it ends the request quietly (the
    metrics, inside this guard, have counted it as 499).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except ClientDisconnect:
            log.debug("client left before the response to %s was complete", scope.get("path"))
        except Exception as exc:
            body = problem_for(exc)  # logs it
            if started:  # a stream broke mid-way: nothing more can be said
                raise
            await problem_response(body)(scope, receive, send)


def _install_sighup(state: AppState) -> bool:
    """Reload on SIGHUP when this loop runs in the main thread (a real server)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    async def reload() -> None:
        log.info("SIGHUP: reloading the rulesets")
        try:
            await state.rulesets.reload()
            state.metrics.reloads.labels("ok").inc()
        except Exception:  # already logged, with its diagnostics, by the loader
            state.metrics.reloads.labels("failed").inc()

    def on_signal() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_signal)
    except (RuntimeError, ValueError, NotImplementedError, AttributeError):
        return False
    return True


RETENTION_EVERY_SECONDS = 3600


async def _keep_retention(decision_log: DecisionLog, days: int) -> None:
    """Delete what is older than `days` at start, then every hour (KAQ_LOG_RETENTION_DAYS)."""
    from datetime import UTC, datetime, timedelta

    while True:
        try:
            gone = await decision_log.prune(datetime.now(UTC) - timedelta(days=days))
            if gone:
                log.info("decision log retention (%d days): %d decisions deleted", days, gone)
        except Exception:  # the log reports its own failures; retention tries again later
            log.warning("decision log retention could not prune; trying again in an hour")
        await asyncio.sleep(RETENTION_EVERY_SECONDS)


def _log_swap(snap: Snapshot) -> None:
    """Say which rulesets now answer: names, versions and digests, with the generation."""
    log.info(
        "rulesets generation %d now serving: %s",
        snap.generation,
        "; ".join(
            f"{name} version {rs.version} {rs.digest}" for name, rs in sorted(snap.rulesets.items())
        ),
    )


def _freeze_heap(registry: Registry) -> None:
    """What the worker has built to serve (its rulesets, the app) lives as long as it does:
    collected once, then kept out of the collector's full scans, which were the slowest
    answers' pauses (p99 at 500 req/s, 2 workers: 13.4 ms against 8.7, max 70 against 27-40;
    docs/performance.md). A reload retires rulesets that must be collected in their turn, so
    the first swap puts the heap back under the collector."""
    gc.collect()
    gc.freeze()

    def thaw(_snapshot: Any) -> None:
        if gc.get_freeze_count():
            gc.unfreeze()

    registry.on_swap.append(thaw)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app; `settings` default to the environment (`get_settings()`) at start."""
    from engine.errors import KaqError

    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from engine.runtime.loader import bind_rulesets

        s = settings or get_settings()
        source = source_for(s, gate=on_engine_thread(check_set))

        def bind(compiled: Any) -> dict[str, Any]:
            return bind_rulesets(compiled)

        registry = Registry(lambda: None, bind)  # every load names its compiler: RulesetSync
        registry.on_swap.append(_log_swap)
        sync = RulesetSync(source, registry)
        decision_log = DecisionLog(s.db_url, on_commit=metrics.observe_commit)
        await decision_log.open()
        try:
            await sync.start()
        except BaseException:
            await decision_log.close()
            raise
        registry.on_swap.append(lambda _snap: setattr(app, "openapi_schema", None))
        state = AppState(
            s,
            registry,
            decision_log,
            metrics,
            Service(registry, decision_log, metrics),
            sync,
            Studio(registry, sync),
        )
        app.state.kaq = state
        app.openapi_schema = None
        sighup = _install_sighup(state)
        retention = (
            asyncio.create_task(_keep_retention(decision_log, s.log_retention_days))
            if s.log_retention_days
            else None
        )
        sync.follow()
        if s.gc_freeze:
            _freeze_heap(registry)
        try:
            yield
        finally:
            if retention is not None:
                retention.cancel()
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await sync.stop()
            app.state.kaq = None
            await state.service.close()
            await registry.close()
            await decision_log.close()
            metrics.process_exiting()

    app = FastAPI(
        title="kaq",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # Starlette's slash redirect builds an absolute Location from the Host header
        # (`Host: evil.example` -> 307 to http://evil.example/...): a 404 names the path.
        redirect_slashes=False,
    )
    app.state.kaq = None
    for module in (evaluate, rulesets, decisions, ops, studio):
        app.include_router(module.router)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return problem_response(exc.to_problem(), exc.headers)

    async def on_engine_error(request: Request, exc: Exception) -> Response:
        return problem_response(problem_for(exc))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            problem(
                422,
                "invalid-request",
                "The request's parameters are invalid.",
                errors=[{"loc": e.get("loc", ()), "msg": e.get("msg", "")} for e in exc.errors()],
            )
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = str(exc.detail)
        if exc.status_code == 404 and (hint := _without_slash(request)):
            detail = f"No route ends with a slash: send {hint}."
        return problem_response(problem(exc.status_code, slug, detail), dict(exc.headers or {}))

    def _without_slash(request: Request) -> str | None:
        path = request.url.path
        if path == "/" or not path.endswith("/"):
            return None
        scope = {**request.scope, "path": path.rstrip("/") or "/"}
        if any(route.matches(scope)[0] is not Match.NONE for route in app.router.routes):
            return scope["path"]
        return None

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(KaqError, on_engine_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    # Added last, so outermost: the metrics see every exception (and count it) first.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(LastResort)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            state: AppState | None = app.state.kaq
            facts_schema = None
            s = state.settings if state else settings
            if state is not None and state.registry.current is not None:
                rs = state.registry.current.rulesets.get(state.settings.default_ruleset)
                facts_schema = rs.facts_schema() if rs is not None else None
            app.openapi_schema = build_openapi(app, s, facts_schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
