"""Fixtures of the service tests: apps on temporary rulesets and decision logs."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from api.state import AppState

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
PG_URL = os.environ.get("KAQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def copy_rulesets(dst: Path, *, tiny: bool = False) -> Path:
    """A private copy of the project's rulesets (or the tiny test ruleset) in `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    src = FIXTURES / "tiny" if tiny else REPO / "rulesets"
    for f in src.glob("*.yaml"):
        shutil.copy(f, dst / f.name)
    return dst


@dataclass
class Running:
    app: Any
    client: httpx.AsyncClient

    @property
    def state(self) -> AppState:
        return self.app.state.kaq


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """An app with its lifespan entered, and an httpx client on it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kaq", timeout=60) as c:
            yield Running(app, c)


def settings_for(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rulesets": copy_rulesets(tmp / "rulesets"),
        "db_url": f"sqlite:///{tmp / 'kaq.db'}",
        "admin_token": ADMIN_TOKEN,
        # gc.freeze is process-wide: in a test process it would also freeze every other
        # test's objects (tests/api/test_api_heap.py turns it on and checks it)
        "gc_freeze": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
async def svc(
    tmp_path_factory: pytest.TempPathFactory, anyio_backend: str
) -> AsyncIterator[Running]:
    """One app on the project's rulesets and a SQLite log, shared by a test module."""
    async with running(settings_for(tmp_path_factory.mktemp("svc"))) as r:
        yield r


def _pg_reachable() -> str | None:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    return None


@pytest.fixture(scope="session")
def pg_available() -> None:
    problem = _pg_reachable()
    if problem is None:
        return
    message = f"PostgreSQL unreachable at {PG_URL}: {problem}"
    if os.environ.get("KAQ_TEST_REQUIRE_POSTGRES"):
        pytest.fail(message + " (KAQ_TEST_REQUIRE_POSTGRES is set)")
    pytest.skip(message + "; set KAQ_TEST_REQUIRE_POSTGRES=1 to make this a failure")


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"kaq_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each decision-log test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("pg_url")


KEY_FACTS = {
    "account_id": "T-1",
    "product_fit": "strong",
    "purchasing_model": "centralized",
    "purchase_pattern": "recurring",
    "annual_spend": 12000000,
    "gross_margin_pct": 20,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A `kaq serve` process."""

    proc: Any
    url: str
    db_url: str
    log: Path

    def children(self) -> list[int]:
        """Worker pids (under uvicorn's supervisor)."""
        out = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(p) for p in text)
        # The spawn context's resource tracker is a child too; workers run spawn_main.
        return [p for p in out if b"spawn_main" in _cmdline(p)]

    def wait_for_workers(self, n: int, timeout: float = 30) -> list[int]:
        """The worker pids once `n` are running (or whatever runs when time is up)."""
        import time

        deadline = time.monotonic() + timeout
        while len(self.children()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.children()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def start_server(
    tmp: Path,
    *,
    workers: int = 1,
    tiny: bool = False,
    port: int | None = None,
    db_url: str | None = None,
    ready_timeout: float = 60,
    env: dict[str, str] | None = None,
    new_session: bool = False,
) -> Server:
    """Start `kaq serve` and wait until /readyz answers 200 (on every worker's socket).

    `env` adds to the environment of the server (e.g. `KAQ_*` settings); with
    `new_session` the server leads its own process group (`os.killpg` kills it whole).
    """
    import subprocess
    import sys
    import time

    rulesets = tmp / "rulesets"
    if not rulesets.exists():
        copy_rulesets(rulesets, tiny=tiny)
    port = port or free_port()
    db_url = db_url or f"sqlite:///{tmp / 'kaq.db'}"
    log = tmp / f"server-{port}-{time.time_ns()}.log"
    env = {**os.environ, "KAQ_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    if tiny:
        env["KAQ_DEFAULT_RULESET"] = "tiny"
    cmd = [
        str(Path(sys.executable).parent / "kaq"),
        "serve",
        "--port",
        str(port),
        "--rulesets",
        str(rulesets),
        "--db",
        db_url,
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", db_url, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kaq serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"kaq serve not ready: {log.read_text()[-2000:]}")


def stop_server(server: Server) -> None:
    import signal

    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except Exception:
            server.proc.kill()
            server.proc.wait(10)
