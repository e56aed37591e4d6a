"""Prometheus metrics: one registry per app, summed over workers in multiprocess mode.

Requests and latency are labelled by route template (`/v1/decisions/{decision_id}`),
never by raw path, so the label set stays bounded. A request whose client left
before its response was complete is counted with status 499 (nginx's "client
closed request"), never as a 500.

With `kaq serve --workers N` each worker is its own process. `kaq serve` then sets
`PROMETHEUS_MULTIPROC_DIR` to a fresh directory before any worker starts, so
prometheus_client (which reads it when imported) keeps every worker's values in
memory-mapped files there, and `/metrics`, whichever worker answers it, adds up
all of them, including those of workers that have since died or been replaced.
Without that variable (one process, or the tests) values live in the process.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .client import CLIENT_CLOSED, ClientDisconnect

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
COMMIT_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory when running under several workers, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The service's collectors, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        self.requests = Counter(
            "kaq_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kaq_http_request_duration_seconds",
            "HTTP request latency by route template, until the response is complete.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.evaluations = Counter(
            "kaq_evaluations",
            "Verdicts produced, by ruleset and qualification.",
            ["ruleset", "qualification"],
            registry=self.registry,
        )
        self.evaluation_errors = Counter(
            "kaq_evaluation_errors",
            "Accounts refused (invalid facts or undecidable), by ruleset and problem type.",
            ["ruleset", "type"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "kaq_ruleset_reloads",
            "Ruleset reloads by result.",
            ["result"],
            registry=self.registry,
        )
        self.log_commit_decisions = Histogram(
            "kaq_decision_log_commit_decisions",
            "Decisions per decision-log transaction (group commit: >1 under concurrency).",
            buckets=COMMIT_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.log_commit_latency = Histogram(
            "kaq_decision_log_commit_seconds",
            "Time to insert and durably commit one decision-log transaction.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_commit(self, decisions: int, seconds: float) -> None:
        """Record one decision-log commit (called on the log's writer thread)."""
        self.log_commit_decisions.observe(decisions)
        self.log_commit_latency.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (every worker's, in multiprocess mode)."""
        if not self.multiprocess:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        # A fresh registry per scrape: the collector reads the files of all workers.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def process_exiting(self) -> None:
        """Tell prometheus_client this worker is gone (its live gauges are dropped)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


class MetricsMiddleware:
    """Pure ASGI middleware (streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            status = CLIENT_CLOSED  # before the response was complete, whatever had started
            raise
        finally:
            route = _template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"
