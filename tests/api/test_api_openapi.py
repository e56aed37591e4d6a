"""The OpenAPI document, and schemathesis against a running `kaq serve`: no 500, no
response that contradicts the document."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from conftest import start_server, stop_server
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

# What the service promises: no 5xx, every answer as documented, and data valid under
# the document accepted (1.0 is an integer for JSON Schema and for the facts model).
CHECKS = [
    not_a_server_error,
    positive_data_acceptance,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tmp_path_factory.mktemp("openapi"))
    yield s
    stop_server(s)


def test_openapi_has_examples_and_the_live_fact_schema(server) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    facts = doc["components"]["schemas"]["Facts"]
    assert "annual_spend" in facts["properties"] and facts["additionalProperties"] is False
    body = doc["paths"]["/v1/evaluate"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"key_account", "potential", "guardrail"}
    for path in (
        "/v1/evaluate",
        "/v1/evaluate/batch",
        "/v1/portfolio/evaluate",
        "/v1/rulesets",
        "/v1/rulesets/{name}",
        "/v1/rulesets/{name}/schema",
        "/v1/admin/reload",
        "/v1/decisions/{decision_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in doc["paths"], path
    err = doc["paths"]["/v1/evaluate"]["post"]["responses"]["422"]["content"]
    assert "application/problem+json" in err
    assert httpx.get(server.url + "/docs").status_code == 200


def test_api_conforms_to_its_openapi_document(server) -> None:
    """Every operation, fuzzed from the document (bounded: a few hundred requests in all)."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case) -> None:
            case.call_and_validate(timeout=30, checks=CHECKS)

        check()


def test_no_server_error_was_logged(server) -> None:
    text = Path(server.log).read_text()
    assert "unhandled error" not in text and "Traceback" not in text, text[-3000:]
