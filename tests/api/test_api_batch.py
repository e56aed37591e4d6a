"""POST /v1/evaluate/batch: JSON in order with errors in place; NDJSON streamed."""

from __future__ import annotations

import json

import pytest
from conftest import KEY_FACTS, Running

pytestmark = pytest.mark.anyio
NDJSON = {"content-type": "application/x-ndjson"}


async def test_json_batch_keeps_order_and_reports_a_bad_item_in_place(svc: Running) -> None:
    accounts = [
        {**KEY_FACTS, "account_id": "A-0"},
        {**KEY_FACTS, "account_id": "A-1", "annual_spend": -1},
        "not an object",
        {**KEY_FACTS, "account_id": "A-3", "product_fit": "none"},
    ]
    r = await svc.client.post("/v1/evaluate/batch", json={"accounts": accounts})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x.get("account_id") for x in results] == ["A-0", "A-1", None, "A-3"]
    assert results[1]["index"] == 1
    assert results[1]["error"]["status"] == 422
    assert results[1]["error"]["errors"][0]["loc"] == ["annual_spend"]
    assert results[2] == {"index": 2, "account_id": None, "error": results[2]["error"]}
    assert results[3]["qualification"] == "not_key_account"
    for ok in (results[0], results[3]):
        stored = await svc.client.get(f"/v1/decisions/{ok['decision_id']}")
        assert stored.json()["verdict"] == ok


async def test_json_batch_shape_errors(svc: Running) -> None:
    post = svc.client.post
    assert (await post("/v1/evaluate/batch", json={"accounts": {}})).status_code == 422
    assert (await post("/v1/evaluate/batch", json=[KEY_FACTS])).status_code == 422
    r = await post("/v1/evaluate/batch", json={"accounts": [], "extra": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["extra"]
    r = await post("/v1/evaluate/batch", json={"accounts": [{}] * 10_001})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["accounts"]
    assert (await post("/v1/evaluate/batch", json={"accounts": []})).json() == {"results": []}
    r = await post("/v1/evaluate/batch", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await post("/v1/evaluate/batch", content=b"{}", headers={"content-type": "text/csv"})
    assert r.status_code == 415


async def test_full_size_json_batch(svc: Running) -> None:
    accounts = [
        {**KEY_FACTS, "account_id": f"B-{i}", "annual_spend": i * 1000} for i in range(2000)
    ]
    r = await svc.client.post("/v1/evaluate/batch", json={"accounts": accounts})
    results = r.json()["results"]
    assert [x["account_id"] for x in results] == [f"B-{i}" for i in range(2000)]
    assert len({x["decision_id"] for x in results}) == 2000


async def test_ndjson_streams_one_result_per_line_in_order(svc: Running) -> None:
    lines = [
        json.dumps({**KEY_FACTS, "account_id": "N-0"}),
        "",
        "{not json",
        json.dumps({"account_id": "N-2", "annual_spend": "x"}),
        "[1, 2]",
        json.dumps({"account_id": "N-4", "annual_spend": float("nan")}),  # NaN is not JSON
        json.dumps({**KEY_FACTS, "account_id": "N-5"}),
    ]
    r = await svc.client.post(
        "/v1/evaluate/batch", content="\n".join(lines).encode(), headers=NDJSON
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    out = [json.loads(line) for line in r.text.splitlines()]
    assert len(out) == 6
    assert out[0]["account_id"] == "N-0" and "decision_id" in out[0]
    assert [o["error"]["status"] for o in out[1:5]] == [400, 422, 422, 400]
    assert [o["index"] for o in out[1:5]] == [1, 2, 3, 4]
    assert out[2]["account_id"] == "N-2"
    assert out[5]["account_id"] == "N-5"
    stored = await svc.client.get(f"/v1/decisions/{out[5]['decision_id']}")
    assert stored.status_code == 200


async def test_ndjson_line_over_cap_is_an_error_entry_and_the_stream_goes_on(svc: Running) -> None:
    cap = svc.state.settings.max_body_bytes
    body = (
        json.dumps({**KEY_FACTS, "account_id": "L-0"}).encode()
        + b"\n"
        + b'{"account_id": "'
        + b"x" * (cap + 10)
        + b'"}\n'
        + json.dumps({**KEY_FACTS, "account_id": "L-2"}).encode()
    )
    r = await svc.client.post("/v1/evaluate/batch", content=body, headers=NDJSON)
    out = [json.loads(line) for line in r.text.splitlines()]
    assert [o.get("account_id") for o in out] == ["L-0", None, "L-2"]
    assert out[1]["error"]["status"] == 413


async def test_ndjson_unknown_ruleset_is_404_before_streaming(svc: Running) -> None:
    r = await svc.client.post(
        "/v1/evaluate/batch", params={"ruleset": "nope"}, content=b"{}\n", headers=NDJSON
    )
    assert r.status_code == 404
