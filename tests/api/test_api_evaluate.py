"""POST /v1/evaluate: verdicts, decision ids, and every error status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import KEY_FACTS, Running, running, settings_for

from api.ids import is_decision_id
from api.openapi import GUARDRAIL, KEY_ACCOUNT, POTENTIAL

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}


async def post(svc: Running, body: bytes, headers: dict[str, str] | None = None, **params: str):
    return await svc.client.post(
        "/v1/evaluate", content=body, headers=JSON if headers is None else headers, params=params
    )


async def test_evaluate_returns_engine_verdict_with_logged_decision_id(svc: Running) -> None:
    r = await svc.client.post("/v1/evaluate", json=KEY_FACTS)
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert is_decision_id(verdict["decision_id"])
    assert verdict["account_id"] == "T-1"
    assert verdict["ruleset"]["name"] == "key-account"
    assert verdict["ruleset"]["digest"].startswith("sha256:")
    for key in (
        "qualification",
        "score",
        "segments",
        "stage",
        "criteria",
        "guardrails",
        "recommendations",
        "missing_facts",
        "trace",
    ):
        assert key in verdict
    stored = (await svc.client.get(f"/v1/decisions/{verdict['decision_id']}")).json()
    assert stored["verdict"] == verdict
    assert stored["facts"] == KEY_FACTS
    assert stored["ruleset"] == verdict["ruleset"]
    assert stored["duration_ms"] > 0


async def test_decision_ids_are_unique_and_sortable(svc: Running) -> None:
    ids = [
        (await svc.client.post("/v1/evaluate", json=KEY_FACTS)).json()["decision_id"]
        for _ in range(5)
    ]
    assert len(set(ids)) == 5
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("facts", "qualification"),
    [(KEY_ACCOUNT, "key_account"), (POTENTIAL, "potential_key_account"), (GUARDRAIL, None)],
)
async def test_openapi_examples_show_what_they_claim(svc: Running, facts, qualification) -> None:
    verdict = (await svc.client.post("/v1/evaluate", json=facts)).json()
    if qualification:
        assert verdict["qualification"] == qualification
    else:
        assert {g["severity"] for g in verdict["guardrails"]} >= {"high"}


async def test_unknown_ruleset_is_404(svc: Running) -> None:
    r = await post(svc, json.dumps(KEY_FACTS).encode(), ruleset="nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:kaq:problem:not-found"


async def test_unknown_decision_is_404(svc: Running) -> None:
    r = await svc.client.get("/v1/decisions/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert r.status_code == 404
    assert (await svc.client.get("/v1/decisions/" + "x" * 300)).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "application/json; charset=latin-1"},
        {"content-type": "application/x-ndjson"},
    ],
)
async def test_wrong_content_type_is_415(svc: Running, headers: dict[str, str]) -> None:
    r = await post(svc, json.dumps(KEY_FACTS).encode(), headers)
    assert r.status_code == 415
    assert r.json()["status"] == 415


async def test_compressed_body_is_415_naming_the_encoding(svc: Running) -> None:
    import gzip

    body = gzip.compress(json.dumps(KEY_FACTS).encode())
    r = await post(svc, body, {"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 415
    assert "gzip" in r.json()["detail"]


async def test_json_with_charset_utf8_is_accepted(svc: Running) -> None:
    r = await post(
        svc, json.dumps(KEY_FACTS).encode(), {"content-type": "application/json; charset=UTF-8"}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"{bad}",
        b"{'a': 1}",
        b'{"account_id": "A",}',
        b"\xff\xfe{}",
        b'{"account_id": "A", "annual_spend": NaN}',
        b'{"account_id": "A", "annual_spend": Infinity}',
        b'{"account_id": "A", "annual_spend": -Infinity}',
        b'{"account_id": "A", "account_id": "B"}',
        b'{"account_id": "A", "annual_spend": ' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50 + b"1" + b"}" * 50,
    ],
    ids=[
        "empty",
        "blank",
        "open",
        "bare",
        "quotes",
        "trailing-comma",
        "not-utf8",
        "nan",
        "inf",
        "-inf",
        "duplicate-key",
        "huge-int",
        "deep-list",
        "deep-object",
    ],
)
async def test_malformed_body_is_400(svc: Running, body: bytes) -> None:
    r = await post(svc, body)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= problem.keys()


async def test_body_over_cap_is_413(svc: Running) -> None:
    big = json.dumps({**KEY_FACTS, "name": "x" * (2 * 1024 * 1024)}).encode()
    assert (await post(svc, big)).status_code == 413

    async def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(40):
            yield b" " * 65536

    r = await svc.client.post("/v1/evaluate", content=chunks(), headers=JSON)
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("facts", "loc"),
    [
        ({"account_id": "A", "annual_spend": -5}, ["annual_spend"]),
        ({"account_id": "A", "annual_spend": "lots"}, ["annual_spend"]),
        ({"account_id": "A", "anual_spend": 5}, ["anual_spend"]),
        ({"annual_spend": 5}, ["account_id"]),
        ({"account_id": "A" * 200}, ["account_id"]),
        ({"account_id": "A", "product_fit": "great"}, ["product_fit"]),
        ({"account_id": "A", "name": "x" * 20_000}, ["name"]),
        ({"account_id": "A", "name": "\ud800"}, ["name"]),
    ],
    ids=[
        "negative",
        "string-number",
        "unknown-field",
        "required",
        "too-long-id",
        "enum",
        "string-cap",
        "lone-surrogate",
    ],
)
async def test_invalid_facts_are_422_naming_the_field(svc: Running, facts, loc) -> None:
    r = await post(svc, json.dumps(facts).encode())
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert loc in [e["loc"] for e in problem["errors"]]
    assert all(e["msg"] for e in problem["errors"])


@pytest.mark.parametrize("body", [b"[]", b"1", b'"facts"', b"null", b"true"])
async def test_facts_that_are_not_an_object_are_422(svc: Running, body: bytes) -> None:
    r = await post(svc, body)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == []


async def test_unknown_route_and_method_are_problems(svc: Running) -> None:
    r = await svc.client.get("/v2/nothing")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await svc.client.get("/v1/evaluate")
    assert r.status_code == 405 and r.json()["status"] == 405


async def test_an_engine_failure_on_valid_facts_is_a_logged_500_not_the_callers_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """durable_rules refusing a valid fact was answered 422 "evaluation failed"."""
    from engine.runtime import _durable

    def refuse(handle: object, text: str) -> object:
        raise _durable._dre.error("Could not assert fact, error code: 303")

    async with running(settings_for(tmp_path)) as r:
        monkeypatch.setattr(_durable._dre, "assert_fact", refuse)
        with caplog.at_level("ERROR", logger="kaq.api"):
            resp = await r.client.post("/v1/evaluate", json=KEY_FACTS)
            batch = await r.client.post("/v1/evaluate/batch", json={"accounts": [KEY_FACTS]})
        monkeypatch.undo()
        assert resp.status_code == 500
        body = resp.json()
        assert body["type"] == "urn:kaq:problem:internal"
        assert body["code"] == "evaluation.engine"
        assert batch.status_code == 200
        assert batch.json()["results"][0]["error"]["type"] == "urn:kaq:problem:internal"
        logged = [rec for rec in caplog.records if rec.exc_info]
        assert len(logged) == 2  # once per failure, with its traceback
        text = (await r.client.get("/metrics")).text
        assert 'kaq_http_requests_total{method="POST",route="/v1/evaluate",status="500"}' in text
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/rulesets/"), ("GET", "/healthz/"), ("POST", "/v1/evaluate/")],
)
async def test_a_trailing_slash_is_a_404_naming_the_path_never_a_redirect_to_the_host_header(
    svc: Running, method: str, path: str
) -> None:
    # regression: 307 to http://evil.example/v1/rulesets (the Host header, reflected)
    r = await svc.client.request(method, path, headers={"host": "evil.example"}, json={})
    assert r.status_code == 404 and "location" not in r.headers
    assert r.headers["content-type"] == "application/problem+json"
    assert "evil" not in r.text and path.rstrip("/") in r.json()["detail"]
    assert (await svc.client.get(path.rstrip("/"))).status_code in (200, 405)


async def test_an_unknown_query_parameter_is_refused_naming_the_one_meant(svc: Running) -> None:
    """`?veiw=decision` would otherwise be answered, silently, in the full view."""
    r = await svc.client.post("/v1/evaluate?veiw=decision", json=KEY_FACTS)
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["loc"] == ["query", "veiw"] and "did you mean `view`?" in error["msg"]
    ok = await svc.client.post("/v1/evaluate?view=decision", json=KEY_FACTS)
    assert ok.status_code == 200 and "trace" not in ok.json()
    r = await svc.client.post(
        "/v1/evaluate/batch?=0.0", content=b"{}\n", headers={"content-type": "application/x-ndjson"}
    )
    assert r.status_code == 422  # schemathesis' case: nothing evaluated, nothing logged
