"""PostgreSQL's pool pings a connection only when it has been idle for a while
(`DOCSIFT_DB_PING_IDLE_SECONDS`): a pooled connection the server dropped meanwhile is replaced
without an error; one dropped moments after use fails one statement (a 503 for a request),
and the pool then opens new ones."""

import asyncio

import psycopg
import pytest
from sqlalchemy import exc, text

from backend.db import create_engine, libpq_url
from tests.conftest import _create_postgres_database


@pytest.fixture
def pg_url(postgres_server):
    url, drop = _create_postgres_database(postgres_server)
    yield url
    drop()


def _drop_connections(url: str) -> int:
    """What a server restart does to the pool: every other connection to the database is cut."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return len(
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        )


async def _select_one(engine) -> int:  # noqa: ANN001
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT 1"))).scalar_one()


def _count_pings(engine, monkeypatch) -> list[int]:  # noqa: ANN001
    pings: list[int] = []
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda conn: pings.append(1) or ping(conn))
    return pings


async def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(pg_url, monkeypatch):
    engine = create_engine(pg_url, ping_idle_seconds=0.2)
    pings = _count_pings(engine, monkeypatch)
    try:
        assert await _select_one(engine) == 1
        assert _drop_connections(pg_url) >= 1
        await asyncio.sleep(0.3)
        assert await _select_one(engine) == 1  # pinged, found dead, replaced: no error
        assert pings == [1]
    finally:
        await engine.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged(pg_url, monkeypatch):
    engine = create_engine(pg_url, ping_idle_seconds=60)
    pings = _count_pings(engine, monkeypatch)
    try:
        for _ in range(5):
            assert await _select_one(engine) == 1
        assert pings == []  # the round trip saved on every statement
        assert _drop_connections(pg_url) >= 1
        with pytest.raises(exc.OperationalError):  # the statement on the dropped connection
            await _select_one(engine)
        assert await _select_one(engine) == 1  # the pool opened a new one
    finally:
        await engine.dispose()


async def test_the_classify_pool_pings_only_idle_connections(pg_url):
    """POST /v1/classify's own psycopg pool follows the same rules as the ORM's: a connection
    idle longer than the setting is checked (and a dead one replaced without an error); one
    used moments ago is not (the round trip saved), so its statement fails once (a 503), and
    then the pool's other connections are checked, so the next statement finds a live one."""
    from backend.classification.fastpath import postgres as fastpath_postgres

    store = fastpath_postgres.PostgresStore(pg_url, pool_size=2, ping_idle_seconds=0.2)
    await store.open()
    try:
        async with store.pool.connection() as conn:
            await conn.execute("SELECT 1")
        assert _drop_connections(pg_url) >= 1
        await asyncio.sleep(0.3)
        async with store.pool.connection() as conn:  # idle: checked, found dead, replaced
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        assert _drop_connections(pg_url) >= 1
        # Used moments ago (well within a minute): not checked, or it would be replaced as above.
        store.ping_idle_seconds = 60
        with pytest.raises(psycopg.OperationalError):
            async with store._connection() as conn:
                await conn.execute("SELECT 1")
        await asyncio.gather(*fastpath_postgres._CHECKS)
        async with store._connection() as conn:  # the others were checked and replaced
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await store.close()
