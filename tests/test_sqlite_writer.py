"""SQLite's single writer: money transactions of one process queue in `begin_write`, in turn,
until their transaction ends however it ends; on PostgreSQL `begin_write` does nothing."""

import asyncio

import pytest

from backend.db import begin_write, create_engine, create_sessionmaker


@pytest.fixture
async def sqlite_maker(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _second_writer_waits_until(maker, end) -> list[str]:
    """Session A takes the writer's turn; B asks for it; A's transaction ends with `end`."""
    order: list[str] = []
    a = maker()
    await begin_write(a)

    async def b() -> None:
        async with maker() as session:
            await begin_write(session)
            order.append("b writes")
            await session.commit()

    waiting = asyncio.create_task(b())
    await asyncio.sleep(0.05)
    order.append("a ends")
    await end(a)
    await asyncio.wait_for(waiting, 5)
    return order


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
async def test_a_writer_waits_for_the_transaction_before_it_to_end(sqlite_maker, end):
    async def finish(session):
        if end != "close":
            await getattr(session, end)()
        await session.close()

    assert await _second_writer_waits_until(sqlite_maker, finish) == ["a ends", "b writes"]


async def test_asking_twice_in_one_transaction_does_not_wait_for_itself(sqlite_maker):
    async with sqlite_maker() as session:
        await begin_write(session)
        await asyncio.wait_for(begin_write(session), 1)
        await session.commit()
        # A new transaction of the same session takes a new turn; nothing was left held.
        await asyncio.wait_for(begin_write(session), 1)
        await session.rollback()


async def test_postgresql_has_no_process_queue(postgres_server):
    from tests.conftest import _create_postgres_database

    url, drop = _create_postgres_database(postgres_server)
    engine = create_engine(url)
    try:
        maker = create_sessionmaker(engine)
        async with maker() as a, maker() as b:
            await begin_write(a)
            await asyncio.wait_for(begin_write(b), 1)  # row locks do the work there
    finally:
        await engine.dispose()
        drop()
