"""Rulesets listing, schema, and all-or-nothing reloads (admin endpoint and SIGHUP path)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, KEY_FACTS, Running, running, settings_for

from api.registry import Registry

pytestmark = [pytest.mark.anyio, pytest.mark.serial]  # serial: see pyproject.toml
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_list_rulesets(svc: Running) -> None:
    body = (await svc.client.get("/v1/rulesets")).json()
    [entry] = [r for r in body["rulesets"] if r["name"] == "key-account"]
    assert entry["digest"].startswith("sha256:") and len(entry["digest"]) == 71
    assert entry["rules"] > 0 and entry["version"] and entry["loaded_at"]


async def test_one_ruleset_and_its_schema(svc: Running) -> None:
    detail = (await svc.client.get("/v1/rulesets/key-account")).json()
    assert detail["name"] == "key-account"
    assert "annual_spend" in detail["facts_schema"]["properties"]
    r = await svc.client.get("/v1/rulesets/key-account/schema")
    assert r.headers["content-type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["properties"]["account_id"]["type"] == "string"
    assert schema.get("additionalProperties") is False
    for path in ("/v1/rulesets/nope", "/v1/rulesets/nope/schema"):
        assert (await svc.client.get(path)).status_code == 404


async def test_reload_needs_a_bearer_token(svc: Running) -> None:
    assert (await svc.client.post("/v1/admin/reload")).status_code == 401
    r = await svc.client.post("/v1/admin/reload", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await svc.client.post("/v1/admin/reload", headers={"authorization": f"Basic {ADMIN_TOKEN}"})
    assert r.status_code == 401


async def test_admin_is_403_without_a_configured_token(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, admin_token=None)) as r:
        assert (await r.client.post("/v1/admin/reload", headers=AUTH)).status_code == 403
    async with running(settings_for(tmp_path, admin_token="")) as r:
        assert (await r.client.post("/v1/admin/reload", headers=AUTH)).status_code == 403


async def test_reload_picks_up_a_changed_ruleset(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with running(settings) as r:
        before = (await r.client.get("/v1/rulesets")).json()
        path = settings.rulesets / "key-account.yaml"
        path.write_text(path.read_text().replace('version: "', 'version: "reloaded-', 1))
        out = await r.client.post("/v1/admin/reload", headers=AUTH)
        assert out.status_code == 200, out.text
        assert out.json()["generation"] == before["generation"] + 1
        verdict = (await r.client.post("/v1/evaluate", json=KEY_FACTS)).json()
        assert verdict["ruleset"]["version"].startswith("reloaded-")
        assert verdict["ruleset"]["digest"] != before["rulesets"][0]["digest"]


async def test_reload_keeps_old_ruleset_when_new_one_is_invalid(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with running(settings) as r:
        before = (await r.client.get("/v1/rulesets")).json()
        path = settings.rulesets / "key-account.yaml"
        path.write_text(
            path.read_text().replace(
                "when: \"product_fit == 'strong'\"", "when: \"product_fitt == 'strong'\"", 1
            )
        )
        (settings.rulesets / "broken.yaml").write_text("kaq: 1\nname: [\n")
        out = await r.client.post("/v1/admin/reload", headers=AUTH)
        assert out.status_code == 400
        problem = out.json()
        assert problem["type"] == "urn:kaq:problem:invalid-ruleset"
        files = {d["file"].rsplit("/", 1)[-1] for d in problem["diagnostics"]}
        assert files == {"key-account.yaml", "broken.yaml"}  # every problem at once
        assert all(e["loc"] and e["msg"] for e in problem["errors"])
        assert (await r.client.get("/v1/rulesets")).json() == before
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200
        metrics = (await r.client.get("/metrics")).text
        assert 'kaq_ruleset_reloads_total{result="failed"} 1.0' in metrics


async def test_reload_under_concurrent_traffic_answers_every_request(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with running(settings) as r:
        path = settings.rulesets / "key-account.yaml"
        original = path.read_text()
        stop = asyncio.Event()
        statuses: list[int] = []
        digests: set[str] = set()

        async def client() -> None:
            while not stop.is_set():
                resp = await r.client.post("/v1/evaluate", json=KEY_FACTS)
                statuses.append(resp.status_code)
                digests.add(resp.json()["ruleset"]["digest"])

        async def reloader() -> None:
            for i in range(4):
                path.write_text(original.replace('version: "', f'version: "gen{i}-', 1))
                assert (await r.client.post("/v1/admin/reload", headers=AUTH)).status_code == 200
                if i == 1:  # one bad reload among the good ones
                    path.write_text("kaq: 1\n")
                    assert (
                        await r.client.post("/v1/admin/reload", headers=AUTH)
                    ).status_code == 400
            stop.set()

        await asyncio.gather(*(client() for _ in range(6)), reloader())
        assert statuses and set(statuses) == {200}
        assert len(digests) >= 2
        assert (await r.client.get("/v1/rulesets")).json()["generation"] == 5


class FakeRuleset:
    def __init__(self, name: str):
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_replaced_snapshot_is_closed_only_after_its_last_request_drains() -> None:
    loads = iter([{"a": FakeRuleset("a")}, {"a": FakeRuleset("a")}])
    registry = Registry(lambda: next(loads), lambda loaded: loaded)
    first = await registry.reload()
    old = first.rulesets["a"]
    lease = registry.hold()  # a request in flight on generation 1
    second = await registry.reload()
    assert registry.current is second
    await asyncio.sleep(0.05)
    assert not old.closed and lease.snapshot is first
    lease.release()
    lease.release()  # idempotent
    for _ in range(50):
        if old.closed:
            break
        await asyncio.sleep(0.01)
    assert old.closed and first.refs == 0
    await registry.close()
    assert second.rulesets["a"].closed


async def test_failed_reload_keeps_the_current_snapshot() -> None:
    def loader():
        raise ValueError("bad")

    registry = Registry(lambda: {"a": FakeRuleset("a")}, lambda loaded: loaded)
    snap = await registry.reload()
    registry._compiler = loader
    with pytest.raises(ValueError):
        await registry.reload()
    assert registry.current is snap and not snap.rulesets["a"].closed


async def test_reload_compiles_off_the_engine_thread_so_evaluations_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload whose compilation takes 2 s never holds up an evaluation for that long.

    Compilation is made slow by a sleep in the compiler; evaluations sent meanwhile must
    each answer well within it (they waited for the whole compile when it ran on the
    engine thread).
    """
    import time

    import engine.runtime.loader as loader

    real = loader.compile_source
    compiling = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_compile(file: str, text: str):  # type: ignore[no-untyped-def]
        loop.call_soon_threadsafe(compiling.set)
        time.sleep(2.0)
        return real(file, text)

    async with running(settings_for(tmp_path)) as r:
        monkeypatch.setattr(loader, "compile_source", slow_compile)
        reload = asyncio.create_task(r.client.post("/v1/admin/reload", headers=AUTH))
        await compiling.wait()
        slowest = 0.0
        answered = 0
        while not reload.done():
            started = time.perf_counter()
            resp = await r.client.post("/v1/evaluate", json=KEY_FACTS)
            assert resp.status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            answered += 1
        assert (await reload).status_code == 200
        assert answered >= 5, answered
        assert slowest < 1.0, f"an evaluation waited {slowest:.2f} s during the reload"


async def test_reload_of_an_alias_bomb_is_refused_quickly_and_the_rulesets_stay(
    tmp_path: Path,
) -> None:
    """7 levels of nested aliases (1.2 KB) blocked evaluations for 16 s and then answered."""
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    async with running(settings_for(tmp_path)) as r:
        (tmp_path / "rulesets" / "bomb.yaml").write_text(
            "kaq: 1\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
        before = (await r.client.get("/v1/rulesets")).json()
        started = time.perf_counter()
        resp = await r.client.post("/v1/admin/reload", headers=AUTH)
        assert time.perf_counter() - started < 2.0
        assert resp.status_code == 400
        assert [d["code"] for d in resp.json()["diagnostics"]] == ["yaml.too_large"]
        assert (await r.client.get("/v1/rulesets")).json() == before
        assert (await r.client.post("/v1/evaluate", json=KEY_FACTS)).status_code == 200
