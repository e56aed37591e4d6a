"""The OpenAPI document, and schemathesis against a running `kaq serve`: no 500, no
response that contradicts the document, no request answered otherwise than it says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN_TOKEN, start_server, stop_server

from api.openapi import KEY_ACCOUNT

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
NDJSON = "application/x-ndjson"
# schemathesis's worker threads each parse lambdas' source with `ast` (hypothesis describes
# its strategies); CPython before 3.11.8 leaves the AST constructor's recursion counter off
# when one of those parses fails, and another thread then stops with "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905): one thread there.
SCHEMATHESIS_WORKERS = "2" if sys.version_info >= (3, 11, 8) else "1"

STUDIO_PATHS = r"^/v1/studio/|^/v1/rulesets/\{name\}/versions$"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # The document's maxItems follows this: schemathesis's boundary cases (a batch of
    # exactly the maximum) stay small, instead of 10,000 accounts answered in 140 MB.
    env = {"KAQ_MAX_BATCH_ITEMS": "50"}
    s = start_server(tmp_path_factory.mktemp("openapi"), env=env)
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


def _validator(doc: dict, component: str):
    from jsonschema import Draft202012Validator

    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return Draft202012Validator(schema)


def test_the_batch_document_accepts_what_the_endpoint_answers_in_place(server) -> None:
    # regression (schemathesis ST201): items were declared as valid facts, so a batch with an
    # invalid item looked like a request that should have been refused; NDJSON was a string
    doc = httpx.get(server.url + "/openapi.json").json()
    accounts = [KEY_ACCOUNT, {"account_id": "BAD", "annual_spend": "lots"}, 7, None]
    assert _validator(doc, "BatchRequest").is_valid({"accounts": accounts})
    r = httpx.post(server.url + "/v1/evaluate/batch", json={"accounts": accounts}, timeout=30)
    assert r.status_code == 200
    assert [("error" in x) for x in r.json()["results"]] == [False, True, True, True]

    assert _validator(doc, "BatchLines").is_valid(accounts)
    body = b"".join(json.dumps(a).encode() + b"\n" for a in accounts) + b"not json\n"
    r = httpx.post(
        server.url + "/v1/evaluate/batch",
        content=body,
        headers={"content-type": "application/x-ndjson"},
        timeout=30,
    )
    assert r.status_code == 200
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert len(lines) == 5 and _validator(doc, "BatchResultLines").is_valid(lines)
    ndjson = doc["paths"]["/v1/evaluate/batch"]["post"]["requestBody"]["content"][NDJSON]
    assert ndjson["schema"] == {"$ref": "#/components/schemas/BatchLines"}

    # A portfolio is refused whole when an account is invalid, and says so.
    assert not _validator(doc, "PortfolioRequest").is_valid({"accounts": accounts[1:2]})
    r = httpx.post(server.url + "/v1/portfolio/evaluate", json={"accounts": accounts[1:2]})
    assert r.status_code == 422


def _schemathesis(server, *args: str) -> list[str]:
    """`schemathesis run` against the server, as both runs below share it, then `args`."""
    return [
        str(Path(sys.executable).parent / "schemathesis"),
        "--no-color",
        "run",
        server.url + "/openapi.json",
        "--workers",
        SCHEMATHESIS_WORKERS,
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        *args,
    ]


@pytest.mark.once
def test_api_conforms_to_its_openapi_document(server, tmp_path: Path) -> None:
    """schemathesis as the audit ran it: every phase and every check, NDJSON bodies too.

    The hooks file lets schemathesis put NDJSON on the wire and read it back; at least
    2,000 cases in all (about half a minute).
    """
    sent = tmp_path / "ndjson-sent"
    cmd = _schemathesis(
        server,
        "--checks",
        "all",
        # replaced by the hooks' negative_data_rejection_on_the_wire (NDJSON-aware)
        "--exclude-checks",
        "negative_data_rejection",
        "--max-examples",
        "50",
        # The studio's endpoints take a ruleset's text: whether one is valid (200) or not
        # (422 with diagnostics), or saved on a stale base (409), is not something a JSON
        # Schema can say, so schema-valid texts are "rejected" by design. They are tested
        # with hostile texts of their own in test_api_studio.py.
        "--exclude-path-regex",
        STUDIO_PATHS,
    )
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "KAQ_TEST_NDJSON_SENT": str(sent)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    report = out.stdout + out.stderr
    print(report[-1500:])
    # On failure, what schemathesis found (FAILURES and ERRORS come before the summary).
    found = report[: report.find("SUMMARY")][-12000:]
    assert out.returncode == 0, found
    cases = int(re.search(r"(\d+) generated", report).group(1))  # type: ignore[union-attr]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert selected is not None and selected[1] == selected[3], report[-3000:]
    studio = [
        p
        for p in httpx.get(server.url + "/openapi.json").json()["paths"]
        if re.search(STUDIO_PATHS, p)
    ]
    assert int(selected[2]) - int(selected[1]) >= len(studio) >= 6  # only those left out
    assert int(selected[3]) >= 11
    assert cases >= 2000, report[-3000:]
    assert "Serialization not possible" not in report
    assert sent.exists() and len(sent.read_text().splitlines()) >= 50  # NDJSON requests made


def test_studio_endpoints_never_answer_a_server_error(server, tmp_path: Path) -> None:
    """The studio's operations, left out above, fuzzed with the checks a text-taking endpoint
    can meet: never a 5xx, only documented status codes and content types, answers as their
    schema says. (Whether a text is valid is not a schema's to say: test_api_studio.py.)"""
    cmd = _schemathesis(
        server,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--include-path-regex",
        STUDIO_PATHS,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[: report.find("SUMMARY")][-12000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert selected is not None and int(selected[3]) >= 6, report[-3000:]


def test_no_server_error_was_logged(server) -> None:
    text = Path(server.log).read_text()
    assert "unhandled error" not in text and "Traceback" not in text, text[-3000:]
