"""The batch item job is exactly-once in effect, whatever the queue does: run again after success,
after a crash that left a credit hold, or twice at the same time, an item ends with one result
and one debit (on SQLite and PostgreSQL)."""

import asyncio

import pytest
from sqlalchemy import func
from sqlmodel import select

from backend.backends.base import ClassifyRequest, ClassifyResult
from backend.backends.fake import FunctionBackend
from backend.batches.tasks import Superseded, classify_item
from backend.billing import ledger
from backend.models import (
    Account,
    Batch,
    BatchItem,
    Classification,
    CreditReservation,
    LedgerEntry,
)
from tests.conftest import make_settings
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


class SlowBackend(FunctionBackend):
    """Takes a while to answer, so two runs of one item overlap."""

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        await asyncio.sleep(0.2)
        return await super().classify(request)


@pytest.fixture
def fake_backend():
    return SlowBackend()


@pytest.fixture
def settings(both_databases, tmp_path):
    return make_settings(both_databases, tmp_path)


async def _batch_without_jobs(harness, tenant, n: int) -> tuple[str, list[str]]:
    """Batch rows written directly (no queue job): the test plays the queue."""
    docs = [await make_document(harness, tenant, [f"invoice {i}"]) for i in range(n)]
    async with harness.app.state.docsift.sessionmaker() as session:
        batch = Batch(
            account_id=tenant.account_id,
            classification_schema=SCHEMA,
            query_model="fake",
            total=n,
            credits_estimate=n,
        )
        session.add(batch)
        await session.flush()
        items = [
            BatchItem(batch_id=batch.id, account_id=tenant.account_id, position=i, document_id=d)
            for i, d in enumerate(docs)
        ]
        session.add_all(items)
        await session.commit()
        return batch.id, [i.id for i in items]


async def _facts(harness, tenant, batch_id: str) -> dict:
    async with harness.app.state.docsift.sessionmaker() as session:
        account = await session.get(Account, tenant.account_id, populate_existing=True)
        batch = await session.get(Batch, batch_id, populate_existing=True)
        items = (await session.exec(select(BatchItem).where(BatchItem.batch_id == batch_id))).all()
        ids = [i.id for i in items]
        results = (
            await session.exec(
                select(func.count()).where(Classification.id.in_(ids))  # type: ignore[union-attr]
            )
        ).one()
        debits = (
            await session.exec(
                select(func.count(), func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.account_id == tenant.account_id, LedgerEntry.kind == "debit"
                )
            )
        ).one()
        holds = (await session.exec(select(func.count()).select_from(CreditReservation))).one()
        return {
            "statuses": sorted(i.status for i in items),
            "attempts": sorted(i.attempts for i in items),
            "results": results,
            "debits": tuple(debits),
            "balance": account.balance,
            "reserved": account.reserved,
            "holds": holds,
            "batch": (batch.status, batch.succeeded, batch.failed, batch.credits_used),
            "ledger_sum": await ledger.ledger_sum(session, tenant.account_id),
        }


async def test_a_second_run_of_a_done_item_does_nothing(harness, tenant, fake_backend):
    state = harness.app.state.docsift
    batch_id, (item_id,) = await _batch_without_jobs(harness, tenant, 1)
    await classify_item(state, item_id)
    await classify_item(state, item_id)
    facts = await _facts(harness, tenant, batch_id)
    assert len(fake_backend.calls) == 1
    assert facts["statuses"] == ["completed"] and facts["results"] == 1
    assert facts["debits"] == (1, -1) and facts["balance"] == 999 == facts["ledger_sum"]
    assert facts["batch"] == ("completed", 1, 0, 1)


async def test_a_run_after_a_crash_releases_the_dead_runs_hold(harness, tenant, fake_backend):
    state = harness.app.state.docsift
    batch_id, (item_id,) = await _batch_without_jobs(harness, tenant, 1)
    # What a worker killed during the model call leaves: the item running, its credits held.
    async with state.sessionmaker() as session:
        item = await session.get(BatchItem, item_id)
        item.status, item.attempts = "running", 1
        session.add(item)
        await session.commit()
    await ledger.reserve(
        state.sessionmaker, account_id=tenant.account_id, request_id=item_id, amount=1
    )
    await classify_item(state, item_id)
    facts = await _facts(harness, tenant, batch_id)
    assert facts["statuses"] == ["completed"] and facts["attempts"] == [2]
    assert facts["results"] == 1 and facts["debits"] == (1, -1)
    assert (facts["reserved"], facts["holds"]) == (0, 0)
    assert facts["balance"] == 999 == facts["ledger_sum"]


async def test_two_runs_at_once_store_one_result_and_one_debit(harness, tenant, fake_backend):
    state = harness.app.state.docsift
    batch_id, item_ids = await _batch_without_jobs(harness, tenant, 4)
    runs = [classify_item(state, item_id) for item_id in item_ids for _ in range(2)]
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    # A run that lost the race either stood down or asks the queue to retry it later...
    assert all(o is None or isinstance(o, Superseded) for o in outcomes), outcomes
    for item_id, outcome in zip([i for i in item_ids for _ in range(2)], outcomes, strict=True):
        if isinstance(outcome, Superseded):
            await classify_item(state, item_id)  # ...which then finds the item done.
    facts = await _facts(harness, tenant, batch_id)
    assert facts["statuses"] == ["completed"] * 4 and facts["results"] == 4
    assert facts["debits"] == (4, -4) and facts["balance"] == 996 == facts["ledger_sum"]
    assert (facts["reserved"], facts["holds"]) == (0, 0)
    assert facts["batch"] == ("completed", 4, 0, 4)


async def test_an_item_that_keeps_dying_is_failed_and_the_batch_still_completes(
    harness, tenant, fake_backend
):
    state = harness.app.state.docsift
    batch_id, (first, second) = await _batch_without_jobs(harness, tenant, 2)
    async with state.sessionmaker() as session:
        item = await session.get(BatchItem, first)
        item.status, item.attempts = "running", state.settings.batch_max_attempts
        session.add(item)
        await session.commit()
    await classify_item(state, first)
    await classify_item(state, second)
    facts = await _facts(harness, tenant, batch_id)
    assert facts["statuses"] == ["completed", "failed"]
    assert facts["batch"] == ("completed", 1, 1, 1) and facts["debits"] == (1, -1)
    async with state.sessionmaker() as session:
        failed = await session.get(BatchItem, first)
        assert failed.error.startswith("internal_error: gave up after")


async def test_two_runs_of_one_evaluation_classify_each_item_once(harness, tenant, fake_backend):
    """Evaluation items are keyed the same way (a run retried while the first still lives)."""
    from backend.evaluation.runner import run
    from backend.models import Evaluation, EvaluationItem

    state = harness.app.state.docsift
    docs = [await make_document(harness, tenant, [f"invoice {i}"]) for i in range(3)]
    async with state.sessionmaker() as session:
        evaluation = Evaluation(
            account_id=tenant.account_id,
            classification_schema=SCHEMA,
            query_model="fake",
            total=3,
        )
        session.add(evaluation)
        await session.flush()
        for i, doc in enumerate(docs):
            session.add(
                EvaluationItem(
                    evaluation_id=evaluation.id,
                    position=i,
                    document_id=doc,
                    expected_label="invoice",
                )
            )
        await session.commit()
    await asyncio.gather(run(state, evaluation.id), run(state, evaluation.id))
    async with state.sessionmaker() as session:
        stored = await session.get(Evaluation, evaluation.id, populate_existing=True)
        assert stored.status == "completed" and stored.done == 3
        results = (
            await session.exec(
                select(func.count()).where(Classification.evaluation_id == evaluation.id)
            )
        ).one()
        assert results == 3
        account = await session.get(Account, tenant.account_id, populate_existing=True)
        assert (account.balance, account.reserved) == (997, 0)
        assert await ledger.ledger_sum(session, tenant.account_id) == 997
