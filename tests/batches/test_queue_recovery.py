"""What the queue keeps across processes: work a dead single-machine (SQLite) process left is
taken up at the next start; on PostgreSQL the rate limit is shared and exact, and processes
starting together migrate one at a time."""

import asyncio

import pytest
from sqlalchemy import func, text
from sqlmodel import select

from backend.db import create_engine, create_sessionmaker
from backend.errors import RateLimited
from backend.migrate import upgrade
from backend.models import (
    Batch,
    BatchItem,
    Evaluation,
    EvaluationItem,
    RateLimitHit,
    WebhookDelivery,
    utcnow,
)
from backend.ratelimit import KeyRateLimiter
from tests.batches.receiver import Receiver
from tests.conftest import make_settings, start_harness
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


async def _until(predicate, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def test_a_restart_takes_up_what_a_dead_process_left(tmp_path, fake_backend):
    """SQLite: the in-memory broker's jobs die with the process; the rows carry on."""
    receiver = Receiver().start()
    try:
        settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
        async for harness in start_harness(settings, [fake_backend]):
            tenant = await harness.tenant()
            docs = [await make_document(harness, tenant, [f"invoice {i}"]) for i in range(3)]
            # What a process killed mid-way leaves: rows, and no job for them.
            async with harness.app.state.docsift.sessionmaker() as session:
                batch = Batch(
                    account_id=tenant.account_id,
                    classification_schema=SCHEMA,
                    query_model="fake",
                    status="running",
                    total=3,
                    webhook_url=receiver.url,
                )
                session.add(batch)
                evaluation = Evaluation(
                    account_id=tenant.account_id,
                    classification_schema=SCHEMA,
                    query_model="fake",
                    status="running",
                    total=3,
                )
                session.add(evaluation)
                await session.flush()
                for i, doc in enumerate(docs):
                    session.add(
                        BatchItem(
                            batch_id=batch.id,
                            account_id=tenant.account_id,
                            position=i,
                            document_id=doc,
                            status="running" if i == 0 else "pending",
                            attempts=1 if i == 0 else 0,
                        )
                    )
                    session.add(
                        EvaluationItem(
                            evaluation_id=evaluation.id,
                            position=i,
                            document_id=doc,
                            expected_label="invoice",
                        )
                    )
                session.add(
                    WebhookDelivery(
                        account_id=tenant.account_id,
                        event_key="test:orphan",
                        event_type="test.event",
                        url=receiver.url,
                        body='{"id":"x","type":"test.event"}',
                    )
                )
                await session.commit()
                batch_id, evaluation_id = batch.id, evaluation.id
        # The next start of the process finishes all of it.
        async for harness in start_harness(settings, [fake_backend]):
            maker = harness.app.state.docsift.sessionmaker

            async def finished(maker=maker) -> bool:
                async with maker() as session:
                    b = await session.get(Batch, batch_id, populate_existing=True)
                    e = await session.get(Evaluation, evaluation_id, populate_existing=True)
                    return b.status == "completed" and e.status == "completed"

            await _until(finished)
            await _until(lambda: _received(receiver, 2))
            async with maker() as session:
                b = await session.get(Batch, batch_id)
                assert (b.succeeded, b.failed) == (3, 0)
                e = await session.get(Evaluation, evaluation_id)
                assert e.done == 3 and e.metrics["accuracy"] == 1.0
        types = sorted(r.headers["docsift-event-type"] for r in receiver.received)
        assert types == ["batch.completed", "test.event"]
    finally:
        receiver.stop()


async def _received(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


@pytest.fixture
async def pg_maker(postgres_server):
    from tests.conftest import _create_postgres_database

    url, drop = _create_postgres_database(postgres_server)
    engine = create_engine(url)
    await upgrade(engine)
    yield url, create_sessionmaker(engine)
    await engine.dispose()
    drop()


@pytest.mark.postgres
async def test_the_database_rate_limit_is_shared_and_exact(pg_maker):
    url, maker = pg_maker
    # Two limiters on two engines: two API processes.
    other_engine = create_engine(url)
    try:
        limiters = [
            KeyRateLimiter(5, "database", maker),
            KeyRateLimiter(5, "database", create_sessionmaker(other_engine)),
        ]
        outcomes = await asyncio.gather(
            *[limiters[i % 2].hit("key-a") for i in range(20)], return_exceptions=True
        )
        assert outcomes.count(None) == 5
        refused = [o for o in outcomes if o is not None]
        assert all(isinstance(o, RateLimited) for o in refused) and len(refused) == 15
        assert all(1 <= int(o.headers["Retry-After"]) <= 60 for o in refused)
        await limiters[1].hit("key-b")  # another key has its own window
        async with maker() as session:
            session.add(RateLimitHit(key="key-c", at=utcnow().replace(year=2000)))
            await session.commit()
        await limiters[0].prune()
        async with maker() as session:
            counts = dict(
                (
                    await session.exec(
                        select(RateLimitHit.key, func.count()).group_by(RateLimitHit.key)
                    )
                ).all()
            )
        assert counts == {"key-a": 5, "key-b": 1}
    finally:
        await other_engine.dispose()


@pytest.mark.postgres
async def test_processes_starting_together_migrate_one_at_a_time(postgres_server):
    from tests.conftest import _create_postgres_database

    url, drop = _create_postgres_database(postgres_server)
    engines = [create_engine(url) for _ in range(4)]
    try:
        await asyncio.gather(*[upgrade(engine) for engine in engines])
        async with engines[0].connect() as conn:
            found = (
                await conn.execute(
                    text(
                        "SELECT to_regclass('batch_item') IS NOT NULL, "
                        "to_regclass('procrastinate_jobs') IS NOT NULL, "
                        "(SELECT count(*) FROM alembic_version)"
                    )
                )
            ).one()
        assert tuple(found) == (True, True, 1)
    finally:
        for engine in engines:
            await engine.dispose()
        drop()
