"""`kaq serve --workers 2`: /metrics adds up every worker, whichever worker answers it."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import start_server, stop_server
from prometheus_client.multiprocess import MultiProcessCollector

pytestmark = pytest.mark.serial  # serial: see pyproject.toml

EVALUATE_OK = 'kaq_http_requests_total{method="POST",route="/v1/evaluate",status="200"}'


def _env(pid: int, name: str) -> str | None:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        key, _, value = entry.decode(errors="replace").partition("=")
        if key == name:
            return value
    return None


def _served_by(metrics_dir: str, pid: int) -> float:
    """Evaluations one worker answered, read from that worker's own counter file alone."""
    files = [str(p) for p in Path(metrics_dir).glob(f"counter_{pid}.db")]
    for metric in MultiProcessCollector.merge(files, accumulate=True):
        for s in metric.samples:
            if (
                s.name == "kaq_http_requests_total"
                and s.labels.get("route") == "/v1/evaluate"
                and s.labels.get("status") == "200"
            ):
                return s.value
    return 0.0


def _scraped(url: str) -> float:
    # A new connection per scrape, so successive scrapes may land on either worker.
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(re.escape(EVALUATE_OK) + r" (\S+)", text)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_the_requests_of_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2, tiny=True)
    try:
        deadline = time.monotonic() + 30
        workers = server.wait_for_workers(2, timeout=30)
        assert len(workers) == 2
        metrics_dir = _env(workers[0], "PROMETHEUS_MULTIPROC_DIR")
        assert metrics_dir and Path(metrics_dir).is_dir()
        assert _env(workers[1], "PROMETHEUS_MULTIPROC_DIR") == metrics_dir

        def one(i: int) -> int:
            # No keep-alive: each request is a new connection, accepted by either worker.
            r = httpx.post(server.url + "/v1/evaluate", json={"account_id": f"M-{i}"}, timeout=10)
            return r.status_code

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while time.monotonic() < deadline + 30:
                statuses = list(pool.map(one, range(sent, sent + 40)))
                assert statuses == [200] * 40
                sent += 40
                if all(_served_by(metrics_dir, pid) > 0 for pid in workers):
                    break
        # A request is counted just after its response is sent: give the last ones a moment.
        settle = time.monotonic() + 10
        while sum(_served_by(metrics_dir, pid) for pid in workers) < sent:
            if time.monotonic() > settle:
                break
            time.sleep(0.05)
        per_worker = [_served_by(metrics_dir, pid) for pid in workers]
        print(f"\n{sent} requests, served per worker: {per_worker}")
        assert all(n > 0 for n in per_worker) and sum(per_worker) == sent
        assert [_scraped(server.url) for _ in range(6)] == [float(sent)] * 6
    finally:
        stop_server(server)
    assert not Path(metrics_dir).exists()  # kaq serve removes its metrics directory at exit
