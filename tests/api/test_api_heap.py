"""The worker's heap: what it builds to serve is frozen out of the collector's full scans
once the rulesets are loaded, and put back under the collector at the first reload, so the
rulesets a reload retires are collected (api/app.py, `_freeze_heap`)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, running, settings_for

pytestmark = pytest.mark.anyio


async def test_the_heap_is_frozen_after_loading_and_thawed_when_a_reload_retires_rulesets(
    tmp_path: Path,
) -> None:
    gc.unfreeze()
    try:
        async with running(settings_for(tmp_path, gc_freeze=True)) as r:
            assert gc.get_freeze_count() > 10_000  # the rulesets, the app, the interpreter
            first = weakref.ref(r.state.registry.current.get("key-account"))
            ok = await r.client.post("/v1/evaluate", json={"account_id": "H-1"})
            assert ok.status_code == 200
            reloaded = await r.client.post(
                "/v1/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            assert reloaded.status_code == 200, reloaded.text
            assert gc.get_freeze_count() == 0
            gc.collect()
            # the retired ruleset is freed: nothing frozen holds it
            assert first() is None
    finally:
        gc.unfreeze()


async def test_without_the_setting_nothing_is_frozen(tmp_path: Path) -> None:
    gc.unfreeze()
    async with running(settings_for(tmp_path)) as r:
        assert (await r.client.post("/v1/evaluate", json={"account_id": "H-2"})).status_code
        assert gc.get_freeze_count() == 0
