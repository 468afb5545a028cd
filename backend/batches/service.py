"""Batches: accept many documents at once, refuse up front what the balance cannot cover, and
hand one queue job per document to the workers (backend/batches/tasks.py).

Every setting that decides a result (schema, classifier version, model, page range, instructions)
is frozen on the batch row when it is accepted, so a retried item gets the same answer.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.classification.schema import (
    SchemaItem,
    schema_json,
    specs_from_json,
    validate_schema,
)
from backend.classification.spec import ModeFields, Modes, RunSpec, inline_spec
from backend.classifiers import service as classifiers
from backend.documents.page_range import parse_page_range
from backend.errors import InsufficientCredits, InvalidRequest, NotFound
from backend.models import Account, Batch, BatchItem, Classifier, Document, utcnow
from backend.state import AppState
from backend.webhooks import delivery as webhook_delivery
from backend.webhooks import service as webhooks

MAX_ITEMS = 10_000
FINAL = ("completed", "failed")
# The queue task that classifies one item (backend/batches/tasks.py runs it; enqueued by name so
# this module need not import the task module, which imports this one).
CLASSIFY_TASK = "docsift.batches.classify_item"
# A batch takes processed documents, and Office files still converting: their items wait.
CLASSIFIABLE = ("processed", "processing")


@dataclass
class BatchSpec:
    """What every item of a batch is classified with, and where its events go."""

    run: RunSpec
    webhook_url: str | None
    webhook_item_events: bool


async def resolve_spec(
    session: AsyncSession,
    state: AppState,
    account: Account,
    *,
    classifier_id: str | None,
    classification_schema: list[SchemaItem] | None,
    query_model: str | None,
    page_range: str | None,
    instructions: str | None,
    modes: ModeFields,
    webhook_url: str | None,
    webhook_item_events: bool,
) -> BatchSpec:
    """Validate a batch's options (400/404 before anything is stored)."""
    if classifier_id:
        classifier = await classifiers.get_classifier(
            session, account_id=account.id, classifier_id=classifier_id
        )
        run = await classifiers.run_spec(
            session,
            state,
            classifier,
            query_model=query_model,
            page_range=page_range,
            overrides=modes,
        )
    else:
        run = inline_spec(
            state,
            labels=validate_schema(classification_schema or [], state.settings),
            model=query_model,
            page_range=page_range,
            instructions=instructions,
            modes=modes.modes_over(),
        )
    if webhook_url:
        webhook_url = webhooks.check_url(webhook_url)
        await webhooks.check_destination(webhook_url, state.settings)
    return BatchSpec(run=run, webhook_url=webhook_url, webhook_item_events=webhook_item_events)


async def item_spec(session: AsyncSession, state: AppState, batch: Batch) -> RunSpec:
    """The spec frozen on the batch, for one of its items: the classifier version it was
    accepted with (even if the classifier changed or was deleted since), or its inline schema."""
    modes = Modes.frozen(batch.modes)
    if batch.classifier_id is None:
        return inline_spec(
            state,
            labels=specs_from_json(batch.classification_schema),
            model=batch.query_model,
            page_range=batch.page_range,
            instructions=batch.instructions,
            modes=modes,
        )
    classifier = await session.get(Classifier, batch.classifier_id)
    assert classifier is not None
    return await classifiers.run_spec(
        session,
        state,
        classifier,
        version=batch.classifier_version,
        query_model=batch.query_model,
        page_range=batch.page_range,
        overrides=ModeFields.exactly(modes),
    )


async def load_documents(
    session: AsyncSession, account_id: str, document_ids: list[str]
) -> dict[str, Document]:
    """The account's processed (or still converting) documents by id; 404 for unknown (or
    another account's), 400 for the others."""
    wanted = list(dict.fromkeys(document_ids))
    found: dict[str, Document] = {}
    for start in range(0, len(wanted), 1000):  # bounded IN lists
        rows = await session.exec(
            select(Document).where(
                col(Document.id).in_(wanted[start : start + 1000]),
                Document.account_id == account_id,
                col(Document.deleted_at).is_(None),
            )
        )
        found.update({d.id: d for d in rows.all()})
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"Documents not found: {', '.join(missing[:5])}.")
    unprocessed = [d.id for d in found.values() if d.status not in CLASSIFIABLE]
    if unprocessed:
        raise InvalidRequest(f"Documents not processed: {', '.join(unprocessed[:5])}.")
    return found


async def create(
    session: AsyncSession,
    state: AppState,
    account: Account,
    spec: BatchSpec,
    documents: list[Document],
    refused: list[tuple[Document, str]] = (),  # type: ignore[assignment]
) -> Batch:
    """Store a batch and enqueue its items in this transaction (flushes only: the caller commits
    with `state.queue.commit`). `refused` are documents that could not be taken (e.g. a bad file
    in a zip): they become failed items, so every file is accounted for."""
    total = len(documents) + len(refused)
    if total == 0:
        raise InvalidRequest("A batch needs at least one document.")
    if total > MAX_ITEMS:
        raise InvalidRequest(f"A batch holds at most {MAX_ITEMS} documents.")
    run = spec.run
    pages = 0
    for document in documents:
        if document.status == "processing":  # pages unknown until converted: not estimated
            continue
        try:
            pages += len(parse_page_range(run.page_range, document.num_pages))
        except InvalidRequest as error:
            raise InvalidRequest(f"Document {document.id}: {error.message}") from None
    estimate = pages * run.estimated_page_credits
    await session.refresh(account)
    available = account.balance - account.reserved
    if estimate > available:
        raise InsufficientCredits(
            f"This batch will cost {estimate} credits; the account has {available} available."
        )
    if spec.webhook_url or account.webhook_url:
        await webhooks.ensure_secret(session, account)
    batch = Batch(
        account_id=account.id,
        classifier_id=run.classifier_id,
        classifier_version=run.classifier_version,
        classification_schema=schema_json(run.labels),
        query_model=run.model,
        page_range=run.page_range,
        instructions=run.instructions,
        modes=run.modes.stored(),
        webhook_url=spec.webhook_url,
        webhook_item_events=spec.webhook_item_events,
        total=total,
        failed=len(refused),
        credits_estimate=estimate,
    )
    session.add(batch)
    await session.flush()
    items = [
        BatchItem(batch_id=batch.id, account_id=account.id, position=i, document_id=d.id)
        for i, d in enumerate(documents)
    ]
    now = utcnow()
    for offset, (document, error) in enumerate(refused):
        items.append(
            BatchItem(
                batch_id=batch.id,
                account_id=account.id,
                position=len(documents) + offset,
                document_id=document.id,
                status="failed",
                error=f"unsupported_file: {error}"[:500],
                finished_at=now,
            )
        )
    session.add_all(items)
    await session.flush()
    await state.queue.enqueue(
        session, CLASSIFY_TASK, [{"item_id": i.id} for i in items if i.status == "pending"]
    )
    if not documents:  # nothing to classify: the batch is over at once
        await complete(session, state, batch.id, account)
    return batch


def webhook_url(batch: Batch, account: Account) -> str | None:
    return batch.webhook_url or account.webhook_url


def summary(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "done": batch.succeeded + batch.failed,
        "succeeded": batch.succeeded,
        "failed": batch.failed,
        "credits_estimate": batch.credits_estimate,
        "credits_used": batch.credits_used,
        "model": batch.query_model,
        "classifier_id": batch.classifier_id,
        "classifier_version": batch.classifier_version,
        "page_range": batch.page_range,
        "webhook_url": batch.webhook_url,
        "created_at": batch.created_at,
        "started_at": batch.started_at,
        "finished_at": batch.finished_at,
    }


async def complete(session: AsyncSession, state: AppState, batch_id: str, account: Account) -> bool:
    """Mark the batch completed and record its `batch.completed` event with its delivery job,
    in the caller's transaction. Conditional: only the first caller wins, so however items
    race to be last, the batch completes once and the event exists once (its key is unique)."""
    won = await session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status != "completed")  # type: ignore[arg-type]
        .values(status="completed", finished_at=utcnow())
    )
    if won.rowcount != 1:
        return False
    batch = await session.get(Batch, batch_id, populate_existing=True)
    assert batch is not None
    url = webhook_url(batch, account)
    if url:
        await webhook_delivery.send(
            state,
            session,
            account_id=account.id,
            url=url,
            event_type="batch.completed",
            event_key=f"batch.completed:{batch.id}",
            data=summary(batch),
            batch_id=batch.id,
        )
    return True
