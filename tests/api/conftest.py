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
