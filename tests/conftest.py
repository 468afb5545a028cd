"""Shared fixtures: an app on a fresh database per test, accounts with keys, fixture documents.

Real model calls are blocked: sockets may only reach loopback (pytest-socket, see pyproject), so a
test that forgot a fake fails instead of calling a provider.
"""

import backend.offline  # noqa: F401, I001

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from backend.backends.base import Backend
from backend.backends.fake import FunctionBackend
from backend.backends.registry import BackendRegistry
from backend.config import Settings
from backend.db import libpq_url
from backend.main import create_app

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = REPO_ROOT.parent / "shared" / "datasets" / "docs-v1"
# Where CI's PostgreSQL listens; tests create a throwaway database per test inside it.
POSTGRES_URL = os.environ.get(
    "DOCSIFT_TEST_POSTGRES_URL", "postgresql://docsift:docsift@127.0.0.1:5432/postgres"
)
# DOCSIFT_TEST_DATABASE=postgres runs the whole suite on PostgreSQL instead of SQLite.
DEFAULT_DATABASE = os.environ.get("DOCSIFT_TEST_DATABASE", "sqlite")


def _postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(libpq_url(POSTGRES_URL), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not _postgres_available():
        if os.environ.get("DOCSIFT_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but not reachable at {POSTGRES_URL}")
        pytest.skip("PostgreSQL not reachable (bash .ci/setup starts one)")
    return POSTGRES_URL


def _create_postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"docsift_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


@pytest.fixture(params=[DEFAULT_DATABASE])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The suite's database: SQLite in tmp_path, or PostgreSQL with DOCSIFT_TEST_DATABASE."""
    if request.param == "postgres":
        url, drop = _create_postgres_database(request.getfixturevalue("postgres_server"))
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'docsift.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def both_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """For tests that must hold on both databases (credits under concurrency, migrations)."""
    if request.param == "postgres":
        url, drop = _create_postgres_database(request.getfixturevalue("postgres_server"))
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'docsift.db'}"


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values = {
        "database_url": database_url,
        "storage_dir": tmp_path / "files",
        "default_model": "fake",
        "log_json": False,
        "rate_limit_per_minute": 0,
        # The app under test runs its queue jobs itself, on PostgreSQL too, and stops quickly.
        "embedded_worker": True,
        "worker_shutdown_seconds": 2.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def fake_backend() -> FunctionBackend:
    return FunctionBackend()


@pytest.fixture
def extra_backends() -> list[Backend]:
    """Override in a test module to add backends (e.g. the LiteLLM one against a fake server)."""
    return []


@dataclass
class Tenant:
    account_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}


@dataclass
class Harness:
    """A running app, an HTTP client to it, and helpers to make tenants."""

    app: Any
    client: httpx.AsyncClient
    settings: Settings

    async def tenant(self, credits: int = 1000, name: str = "acme", admin: bool = False) -> Tenant:
        from backend.accounts.service import create_account

        state = self.app.state.docsift
        async with state.sessionmaker() as session:
            account, key = await create_account(
                session,
                name=name,
                credits=credits,
                key_prefix=self.settings.api_key_prefix,
                is_admin=admin,
            )
            await session.commit()
        return Tenant(account_id=account.id, api_key=key)


async def start_harness(settings: Settings, backends: list[Backend]) -> AsyncIterator[Harness]:
    app = create_app(settings, backends=BackendRegistry(backends))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://docsift.test") as client:
            yield Harness(app=app, client=client, settings=settings)


@pytest.fixture
async def harness(
    settings: Settings, fake_backend: FunctionBackend, extra_backends: list[Backend]
) -> AsyncIterator[Harness]:
    async for h in start_harness(settings, [fake_backend, *extra_backends]):
        yield h


@pytest.fixture
async def client(harness: Harness) -> httpx.AsyncClient:
    return harness.client


@pytest.fixture
async def tenant(harness: Harness) -> Tenant:
    return await harness.tenant()


@pytest.fixture
def dataset_dir() -> Path:
    if not (DATASET_DIR / "MANIFEST.tsv").exists():
        pytest.skip("../shared/datasets/docs-v1 is not beside this checkout")
    return DATASET_DIR


def run(coro: Any) -> Any:
    """Run a coroutine from sync code (scripts in tests)."""
    return asyncio.run(coro)
