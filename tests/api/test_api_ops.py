"""Health, readiness, metrics; the error mapping; importing the app does no work."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections import Counter

import pytest
from conftest import KEY_FACTS, REPO, Running, running, settings_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.errors as engine_errors
from api.errors import problem_for

pytestmark = [pytest.mark.anyio, pytest.mark.serial]  # serial: see pyproject.toml


async def test_health_and_readiness(svc: Running) -> None:
    assert (await svc.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await svc.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["rulesets"] >= 1


async def test_metrics_count_requests_by_route_template_and_verdicts(svc: Running) -> None:
    await svc.client.post("/v1/evaluate", json=KEY_FACTS)
    await svc.client.get("/v1/decisions/NOPE")
    text = (await svc.client.get("/metrics")).text
    assert 'kaq_http_requests_total{method="POST",route="/v1/evaluate",status="200"}' in text
    assert 'route="/v1/decisions/{decision_id}",status="404"' in text
    assert "NOPE" not in text
    assert (
        'kaq_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/evaluate"}'
        in text
    )
    assert 'kaq_evaluations_total{qualification="' in text


def test_every_engine_error_maps_to_a_problem_that_blames_the_right_party() -> None:
    """The caller's and the author's errors are 4xx; a failure inside kaq is a 500."""
    classes = [
        c
        for c in vars(engine_errors).values()
        if isinstance(c, type) and issubclass(c, engine_errors.KaqError)
    ]
    assert len(classes) >= 4
    for cls in classes:
        if cls is engine_errors.RulesetError:
            exc = cls([engine_errors.Diagnostic("f.yaml", 1, 2, "ruleset.x", "m")])
        elif cls is engine_errors.FactsError:
            exc = cls([{"loc": ["a"], "msg": "m", "type": "t"}])
        else:
            exc = cls("m")
        body = problem_for(exc, log=False)
        if issubclass(cls, engine_errors.InternalError):
            assert body["status"] == 500 and body["type"] == "urn:kaq:problem:internal", cls
        else:
            assert 400 <= body["status"] < 500, cls
        assert {"type", "title", "status", "detail"} <= body.keys()


async def test_last_resort_answers_a_logged_problem_500(svc: Running, caplog) -> None:
    app = svc.app

    @app.get("/boom-for-test")
    async def boom() -> None:
        raise KeyError("bug")

    try:
        with caplog.at_level(logging.ERROR, logger="kaq.api"):
            r = await svc.client.get("/boom-for-test")
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "urn:kaq:problem:internal"
        assert "unhandled error" in caplog.text
    finally:
        app.router.routes.pop()


ENDPOINTS = ["/v1/evaluate", "/v1/evaluate/batch", "/v1/portfolio/evaluate"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=5)
    ),
    max_leaves=20,
)
fact_like = st.dictionaries(
    st.sampled_from(
        [
            "account_id",
            "annual_spend",
            "product_fit",
            "gross_margin_pct",
            "support_activities",
            "uses_our_products",
            "id",
            "sid",
            "x",
        ]
    ),
    json_values,
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(ENDPOINTS),
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        fact_like.map(lambda v: json.dumps(v).encode()),
        st.lists(fact_like, max_size=3).map(lambda v: json.dumps({"accounts": v}).encode()),
    ),
    content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain"]),
)
def test_malformed_input_never_reaches_the_last_resort(
    path, body, content_type, fuzz_client
) -> None:
    status = fuzz_client(path, body, content_type)
    assert status < 500


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    """A synchronous poster on a running app (hypothesis drives plain functions)."""
    import anyio.from_thread

    with anyio.from_thread.start_blocking_portal() as portal:
        cm = running(settings_for(tmp_path_factory.mktemp("fuzz")))
        r = portal.call(cm.__aenter__)

        def post(path: str, body: bytes, content_type: str) -> int:
            async def go() -> int:
                resp = await r.client.post(
                    path, content=body, headers={"content-type": content_type}
                )
                if resp.status_code >= 500:
                    print(resp.text)
                return resp.status_code

            return portal.call(go)

        yield post
        portal.call(cm.__aexit__, None, None, None)


def test_importing_the_app_loads_nothing() -> None:
    code = (
        "import sys, api.app as m; "
        "from api.settings import get_settings; "
        "assert m.app.state.kaq is None; "
        "assert get_settings.cache_info().currsize == 0; "
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"KAQ_RULESETS": "/nonexistent", "PATH": ""},
        timeout=60,
    )
    assert out.stdout.strip() == "ok", out.stderr


async def test_settings_come_from_the_environment(monkeypatch, tmp_path) -> None:
    from api.settings import Settings

    monkeypatch.setenv("KAQ_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("KAQ_DB_URL", "postgresql://x@y/z")
    s = Settings()
    assert s.max_body_bytes == 2048 and s.db_url.startswith("postgresql")
    assert s.max_batch_bytes == 32 * 1024 * 1024 and not s.admin_enabled
    monkeypatch.setenv("KAQ_DB_URL", "mysql://nope")
    with pytest.raises(ValueError):
        Settings()
    async with running(settings_for(tmp_path, max_body_bytes=64)) as r:
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 413


def test_kaq_serve_logs_start_up_reloads_and_failed_reloads_at_info(tmp_path) -> None:
    import signal
    import time
    from pathlib import Path

    import httpx
    from conftest import ADMIN_TOKEN, start_server, stop_server

    # start_server passes --log-level warning (uvicorn's): kaq's own events still show.
    server = start_server(tmp_path, tiny=True)
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    path = Path(tmp_path) / "rulesets" / "tiny.yaml"
    try:
        good = path.read_text()
        path.write_text(good.replace('version: "1"', 'version: "2"'))
        reloaded = httpx.post(server.url + "/v1/admin/reload", headers=auth, timeout=30).json()
        digest = reloaded["rulesets"][0]["digest"]
        path.write_text(good.replace("when: \"product_fit == 'strong'\"", 'when: "product_fitt"'))
        failed = httpx.post(server.url + "/v1/admin/reload", headers=auth, timeout=30)
        assert failed.status_code == 400
        diagnostic = failed.json()["errors"][0]["msg"]
        path.write_text(good)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "generation 3" not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_server(server)
    text = server.log.read_text()
    lines = text.splitlines()

    def line(*parts: str) -> str:
        found = [x for x in lines if all(p in x for p in parts)]
        assert found, f"no log line with {parts} in:\n{text}"
        return found[0]

    assert line("INFO", "kaq.decision_log", "decision log ready: sqlite", "schema version")
    assert line("INFO", "generation 1", "tiny version 1 sha256:")
    assert line("INFO", "generation 2", f"tiny version 2 {digest}")
    assert line("ERROR", "loading the rulesets in", "the running rulesets stay")
    assert diagnostic in text  # the diagnostics themselves, file:line:col: code: message
    assert line("INFO", "SIGHUP")
    assert line("INFO", "generation 3", "tiny version 1 sha256:")


async def test_a_batch_counts_each_verdict_under_its_qualification(svc: Running) -> None:
    from engine.tools.corpus import generate_accounts

    pattern = r'kaq_evaluations_total\{qualification="(\w+)",ruleset="[^"]+"\} (\S+)'

    async def counted() -> Counter[str]:
        text = (await svc.client.get("/metrics")).text
        return Counter({m[1]: int(float(m[2])) for m in re.finditer(pattern, text)})

    before = await counted()
    accounts = generate_accounts(60, seed=9)
    r = await svc.client.post("/v1/evaluate/batch", json={"accounts": accounts})
    got = Counter(x["qualification"] for x in r.json()["results"])
    assert len(got) >= 3 and (await counted()) - before == got
