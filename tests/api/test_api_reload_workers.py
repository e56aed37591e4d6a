"""`kaq serve --workers 2` on the folder source: a reload reaches one worker, every worker
serves what that worker validated, and no worker is left on another version."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from conftest import ADMIN_TOKEN, Server, start_server, stop_server

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def served(url: str, n: int = 16) -> dict[int, str]:
    """Worker pid -> the digest of the set it serves, from `n` fresh connections."""
    out: dict[int, str] = {}
    for _ in range(n):
        try:
            source = httpx.get(url + "/v1/rulesets", timeout=10).json()["source"]
        except (httpx.HTTPError, KeyError, ValueError):
            continue  # a worker being replaced
        out[source["served_by"]["pid"]] = source["digest"]
    return out


def all_serve(server: Server, digest: str, workers: int = 2, timeout: float = 10) -> float:
    """Seconds until every worker answers with `digest` (AssertionError if they never do)."""
    started = time.monotonic()
    seen: dict[int, str] = {}
    while time.monotonic() - started < timeout:
        seen.update(served(server.url))
        alive = set(server.children())
        seen = {pid: d for pid, d in seen.items() if pid in alive}
        if len(seen) == workers and set(seen.values()) == {digest}:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"workers serve {seen}, not all {digest}")


def started(server: Server, workers: int = 2) -> list[int]:
    """The worker pids once every worker answers, all with one digest.

    `start_server` returns when one worker is ready; a sibling that is still loading would
    read a file the test edits next, and serve the edit from its start.
    """
    server.wait_for_workers(workers)
    digest = httpx.get(server.url + "/v1/rulesets", timeout=10).json()["source"]["digest"]
    all_serve(server, digest, workers)
    return server.children()


def reload(server: Server) -> dict:
    r = httpx.post(server.url + "/v1/admin/reload", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_admin_reload_reaches_every_worker_within_a_second(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2, tiny=True)
    try:
        started(server)
        first = served(server.url, 24)
        assert len(set(first.values())) == 1
        ruleset = next((tmp_path / "rulesets").glob("*.yaml"))
        ruleset.write_text(ruleset.read_text(encoding="utf-8") + "\n# reloaded\n", "utf-8")
        answer = reload(server)
        new = answer["source"]["digest"]
        assert new not in first.values()
        assert answer["source"]["version"] == 2  # the run's generation 2
        assert all_serve(server, new) < 1.0
    finally:
        stop_server(server)


@pytest.mark.once
def test_files_changed_after_validation_never_reach_a_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2, tiny=True)
    try:
        pids = started(server)
        ruleset = next((tmp_path / "rulesets").glob("*.yaml"))
        good = ruleset.read_text(encoding="utf-8")
        ruleset.write_text(good + "\n# validated\n", "utf-8")
        validated = reload(server)["source"]["digest"]
        # changed again at once, and broken: the other worker must not read the folder
        ruleset.write_text(good.replace("product_fit == 'strong'", "product_fitt"), "utf-8")
        all_serve(server, validated)
        # a worker killed and replaced by the supervisor starts on the folder; it does not
        # load, so the new worker serves the run's generation, like its sibling
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pids[0] in server.children() or len(server.children()) < 2:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.1)
        all_serve(server, validated, timeout=30)
        assert "serves the run's generation" in server.log.read_text()
    finally:
        stop_server(server)


@pytest.mark.once
def test_a_replaced_worker_that_finds_new_valid_files_moves_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2, tiny=True)
    try:
        pids = started(server)
        ruleset = next((tmp_path / "rulesets").glob("*.yaml"))
        ruleset.write_text(ruleset.read_text(encoding="utf-8") + "\n# edited\n", "utf-8")
        before = set(served(server.url, 24).values())
        assert len(before) == 1  # edited files are not served before they are loaded
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        fresh: set[str] = set()
        while not fresh:
            assert time.monotonic() < deadline, "no new generation"
            fresh = set(served(server.url).values()) - before
            time.sleep(0.2)
        (digest,) = fresh
        # the new worker read the folder at its start and made it the generation: the old
        # worker follows it, rather than serving another version beside it
        all_serve(server, digest, timeout=30)
    finally:
        stop_server(server)
