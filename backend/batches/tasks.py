"""The queue job of one batch item: classify one document, exactly once in effect.

The queue delivers a job at least once (a worker killed mid-job has its jobs retried by another),
so exactly-once comes from the database, keyed by the item:

- The item's id is the request id of its classification row (primary key) and of its ledger
  debit (unique `(request_id, kind)`), and the result, the debit and the item's move to
  `completed` are one transaction, conditional on the item not being final yet.
- A run that finds the item final does nothing. A retry after a crash redoes the item from
  scratch: the dead run either committed everything (the item is final) or nothing (its credit
  hold, the only thing it kept, is released first).
- Two runs at once (a worker taken for dead that was only slow) both call the model, but only
  one can commit: the other hits the unique keys or the conditional update, rolls back and
  releases its hold. Nothing is stored or charged twice.
"""

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.batches import service
from backend.billing import ledger
from backend.classification.service import classification_response, run_classification
from backend.errors import ApiError
from backend.models import Account, Batch, BatchItem, Classification, Document, utcnow
from backend.queue import task
from backend.state import AppState
from backend.webhooks import delivery as webhook_delivery

log = logging.getLogger(__name__)
CONVERSION_POLL_SECONDS = 2.0


class Superseded(Exception):
    """Another run of the same item got there first and may still be running: retry later."""


@task(service.CLASSIFY_TASK, retries=5, retry_wait=2)
async def classify_item(state: AppState, item_id: str) -> None:
    if await _document_converting(state, item_id):
        # An Office file still on its way to pages: look again shortly, without counting an
        # attempt (its conversion ends, processed or failed, within the conversion time limit).
        await state.queue.defer(
            service.CLASSIFY_TASK, [{"item_id": item_id}], schedule_in=CONVERSION_POLL_SECONDS
        )
        return
    claimed = await _claim(state, item_id)
    if claimed is None:
        return
    item, batch, account = claimed
    if item.attempts > 1:
        # An earlier run died after holding credits for this item and before charging them
        # (the charge would have made the item final): drop that hold, it never became a debit.
        await ledger.release(state.sessionmaker, request_id=item.id)
    async with state.sessionmaker() as session:
        try:
            record = await _classify(session, state, batch, item, account)
        except ApiError as error:
            # Refused or failed for good (document gone, credits, model error): nothing charged.
            await _settle(session, state, batch, account, item.id, error=error)
            return
        except IntegrityError:
            # A concurrent run stored this item's result (or holds its credits) first.
            await session.rollback()
            if await _is_final(state, item.id):
                return
            raise Superseded(item.id) from None
        await _settle(session, state, batch, account, item.id, record=record)


async def _document_converting(state: AppState, item_id: str) -> bool:
    async with state.sessionmaker() as session:
        status = (
            await session.exec(
                select(Document.status)
                .join(BatchItem, col(BatchItem.document_id) == col(Document.id))
                .where(BatchItem.id == item_id, col(BatchItem.status).not_in(service.FINAL))
            )
        ).first()
    return status == "processing"


async def _claim(state: AppState, item_id: str) -> tuple[BatchItem, Batch, Account] | None:
    """Count an attempt and mark the item running (committed, so progress shows), or None if
    the item is already final."""
    async with state.sessionmaker() as session:
        item = await session.get(BatchItem, item_id)
        if item is None or item.status in service.FINAL:
            return None
        batch = await session.get(Batch, item.batch_id)
        account = await session.get(Account, item.account_id)
        assert batch is not None and account is not None
        if item.attempts >= state.settings.batch_max_attempts:
            await ledger.release(state.sessionmaker, request_id=item.id)
            await _settle(
                session,
                state,
                batch,
                account,
                item.id,
                error=f"internal_error: gave up after {item.attempts} attempts",
            )
            return None
        now = utcnow()
        attempts = (
            await session.execute(
                update(BatchItem)
                .where(BatchItem.id == item_id, col(BatchItem.status).not_in(service.FINAL))
                .values(status="running", attempts=BatchItem.attempts + 1, started_at=now)
                .returning(BatchItem.attempts)
            )
        ).scalar_one_or_none()
        if attempts is None:
            await session.rollback()
            return None
        await session.execute(
            update(Batch)
            .where(Batch.id == batch.id, Batch.status == "queued")  # type: ignore[arg-type]
            .values(status="running", started_at=now)
        )
        await session.commit()
        item.attempts, item.status = attempts, "running"
        return item, batch, account


async def _classify(
    session: AsyncSession, state: AppState, batch: Batch, item: BatchItem, account: Account
) -> Classification:
    """The same paid classification as /v1/classify or a classifier run, keyed by the item."""
    spec = await service.item_spec(session, state, batch)
    return await run_classification(
        session,
        state,
        spec,
        account=account,
        document_id=item.document_id,
        kind="batch",
        request_id=item.id,
    )


async def _settle(
    session: AsyncSession,
    state: AppState,
    batch: Batch,
    account: Account,
    item_id: str,
    *,
    record: Classification | None = None,
    error: ApiError | str | None = None,
) -> bool:
    """Make the item final, count it on the batch, complete the batch if it was the last one,
    and record the webhook events, all in the transaction that holds the result and its debit.
    Returns False (and keeps nothing) if another run made the item final first."""
    now = utcnow()
    if record is not None:
        values: dict[str, Any] = {
            "status": "completed",
            "classification_id": record.id,
            "credits_used": record.credits_used,
            "error": None,
        }
    else:
        message = f"{error.code}: {error.message}" if isinstance(error, ApiError) else str(error)
        values = {"status": "failed", "error": message[:500]}
    settled = await session.execute(
        update(BatchItem)
        .where(BatchItem.id == item_id, col(BatchItem.status).not_in(service.FINAL))
        .values(finished_at=now, **values)
    )
    if settled.rowcount != 1:
        await _give_up(session, state, item_id, record)
        return False
    succeeded, failed, total = (
        await session.execute(
            update(Batch)
            .where(Batch.id == batch.id)  # type: ignore[arg-type]
            .values(
                succeeded=Batch.succeeded + (1 if record else 0),
                failed=Batch.failed + (0 if record else 1),
                credits_used=Batch.credits_used + (record.credits_used if record else 0),
            )
            .returning(Batch.succeeded, Batch.failed, Batch.total)
        )
    ).one()
    url = service.webhook_url(batch, account)
    if batch.webhook_item_events and url:
        item = await session.get(BatchItem, item_id, populate_existing=True)
        assert item is not None
        await webhook_delivery.send(
            state,
            session,
            account_id=account.id,
            url=url,
            event_type=f"batch.item.{item.status}",
            event_key=f"batch.item:{item_id}",
            data={"batch_id": batch.id, "item": item_view(item, record)},
            batch_id=batch.id,
        )
    if succeeded + failed >= total:
        await service.complete(session, state, batch.id, account)
    try:
        await state.queue.commit(session)
    except IntegrityError:
        await _give_up(session, state, item_id, record)
        return False
    return True


async def _give_up(
    session: AsyncSession, state: AppState, item_id: str, record: Classification | None
) -> None:
    """Drop this run's work: the rollback undoes its result and debit, and its credit hold
    (restored by the rollback) is released."""
    await session.rollback()
    state.queue.discard(session)
    if record is not None:
        await ledger.release(state.sessionmaker, request_id=item_id)
    log.info("batch item %s was settled by another run; this run's result was dropped", item_id)


async def _is_final(state: AppState, item_id: str) -> bool:
    async with state.sessionmaker() as session:
        item = await session.get(BatchItem, item_id)
        return item is None or item.status in service.FINAL


def item_view(item: BatchItem, record: Classification | None) -> dict[str, Any]:
    """An item as the API and webhooks show it: `result` is the /v1/classify response."""
    return {
        "item_id": item.id,
        "position": item.position,
        "document_id": item.document_id,
        "status": item.status,
        "attempts": item.attempts,
        "error": item.error,
        "result": classification_response(record).model_dump(mode="json") if record else None,
    }


async def resume(state: AppState) -> int:
    """Defer the unfinished items again (the in-memory broker lost its jobs with its process)."""
    async with state.sessionmaker() as session:
        pending = (
            await session.exec(
                select(BatchItem.id)
                .join(Batch, col(Batch.id) == col(BatchItem.batch_id))
                .where(
                    Batch.status != "completed",
                    col(BatchItem.status).not_in(service.FINAL),
                )
                .order_by(col(BatchItem.position))
            )
        ).all()
    await state.queue.defer(service.CLASSIFY_TASK, [{"item_id": item_id} for item_id in pending])
    return len(pending)
