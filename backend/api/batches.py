"""Batches: many documents classified by queue workers, with progress and every item's result."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlmodel import col, select

from backend.api.classify import IdempotencyKey
from backend.api.documents import DocumentOut, _read_limited, documents_out
from backend.api.pagination import PageDep, Paginated, paginate
from backend.batches import service
from backend.batches.tasks import item_view
from backend.billing import idempotency
from backend.classification.schema import SchemaItem
from backend.classification.service import ClassifyResponse
from backend.classification.spec import ModeFields
from backend.deps import CurrentAccount, RequireScope, SessionDep, StateDep, check_classifier
from backend.documents import service as documents
from backend.errors import InvalidRequest, NotFound, PayloadTooLarge
from backend.errors_handlers import describe_error
from backend.models import Account, Batch, BatchItem, Classification, Document

router = APIRouter(tags=["batches"])
BatchId = Annotated[str, Path(max_length=64)]


class BatchOptions(ModeFields):
    classifier_id: str | None = Field(default=None, max_length=64)
    classification_schema: list[SchemaItem] | None = None
    query_model: str | None = Field(default=None, max_length=200)
    page_range: str | None = Field(default=None, max_length=200, examples=["1-2"])
    instructions: str | None = Field(default=None, max_length=4000)
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where to POST the signed `batch.completed` event (default: the account's)",
    )
    webhook_item_events: bool = Field(
        default=False,
        strict=True,
        description="Also send a `batch.item.completed|failed` event per item",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "BatchOptions":
        if (self.classifier_id is None) == (self.classification_schema is None):
            raise ValueError("give exactly one of classifier_id and classification_schema")
        if self.classifier_id and self.instructions:
            raise ValueError("instructions come from the classifier; set them there")
        return self


class BatchIn(BatchOptions):
    document_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=service.MAX_ITEMS
    )


class BatchStarted(BaseModel):
    batch_id: str
    status: str
    total: int
    credits_estimate: int
    documents: list[DocumentOut] | None = Field(
        default=None, description="For an upload: the documents it made (failed ones included)"
    )


class BatchSummary(BaseModel):
    batch_id: str
    status: str = Field(description="queued | running | completed")
    total: int
    done: int
    succeeded: int
    failed: int
    credits_estimate: int
    credits_used: int
    model: str
    classifier_id: str | None
    classifier_version: int | None
    page_range: str | None
    webhook_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BatchItemOut(BaseModel):
    item_id: str = Field(description="Also the request_id of the item's classification")
    position: int
    document_id: str
    status: str = Field(description="pending | running | completed | failed")
    attempts: int
    error: str | None
    result: ClassifyResponse | None = Field(description="The /v1/classify response, once done")
    filename: str | None = Field(default=None, description="The document's file name")


class BatchOut(BatchSummary):
    labels: list[str]
    items: list[BatchItemOut]


async def _options_spec(
    options: BatchOptions, account: Account, session: SessionDep, state: StateDep
) -> service.BatchSpec:
    return await service.resolve_spec(
        session,
        state,
        account,
        classifier_id=options.classifier_id,
        classification_schema=options.classification_schema,
        query_model=options.query_model,
        page_range=options.page_range,
        instructions=options.instructions,
        modes=options,
        webhook_url=options.webhook_url,
        webhook_item_events=options.webhook_item_events,
    )


def _started(batch: Batch, docs: list[DocumentOut] | None = None) -> dict[str, Any]:
    return BatchStarted(
        batch_id=batch.id,
        status=batch.status,
        total=batch.total,
        credits_estimate=batch.credits_estimate,
        documents=docs,
    ).model_dump(mode="json")


@router.post("/batches", status_code=202, dependencies=[RequireScope("classify")])
async def create_batch(
    request: Request,
    body: BatchIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchStarted:
    """Classify many processed documents on the queue; refused up front (402, with its cost) if the balance cannot cover it."""
    check_classifier(request, body.classifier_id)
    spec = await _options_spec(body, account, session, state)
    found = await service.load_documents(session, account.id, body.document_ids)

    async def work() -> dict[str, Any]:
        batch = await service.create(
            session, state, account, spec, [found[i] for i in body.document_ids]
        )
        return _started(batch)

    try:
        result = await idempotency.run(
            state.sessionmaker,
            session,
            account_id=account.id,
            key=idempotency_key,
            endpoint="batches",
            payload=body.model_dump(),
            work=work,
        )
    except BaseException:
        state.queue.discard(session)
        raise
    await state.queue.after_commit(session)
    return BatchStarted.model_validate(result)


@router.post("/batch-uploads", status_code=202, dependencies=[RequireScope("classify")])
async def upload_batch(
    request: Request,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description="A zip of documents (or a single document)")],
    batch: Annotated[
        str,
        Form(
            max_length=200_000,
            description="JSON: the options of POST /v1/batches, without document_ids",
        ),
    ],
) -> BatchStarted:
    """Upload a zip and classify every document in it as one batch."""
    try:
        options = BatchOptions.model_validate_json(batch)
    except ValidationError as error:
        problems = "; ".join(
            describe_error(e, loc=("batch", *e.get("loc", ()))) for e in error.errors()[:5]
        )
        raise InvalidRequest(f"Invalid batch options: {problems}") from None
    check_classifier(request, options.classifier_id)
    spec = await _options_spec(options, account, session, state)
    limit = state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 1_000_000:
        raise PayloadTooLarge(f"The upload is larger than the {limit // 2**20} MB limit.")
    data = await _read_limited(file, limit)
    try:
        made = await documents.ingest(
            session, state, account=account, filename=file.filename, data=data, extract=True
        )
        # Every document the upload made is an item, an e-mail's attachments included; Office
        # files still converting are items whose job waits for their conversion.
        usable = [d for d in made.everything if d.status in service.CLASSIFIABLE]
        refused = [
            (d, d.error or "could not be read")
            for d in made.everything
            if d.status not in service.CLASSIFIABLE
        ]
        created = await service.create(session, state, account, spec, usable, refused)
        await state.queue.commit(session)
    except BaseException:
        state.queue.discard(session)
        raise
    made_out = await documents_out(session, made.everything)
    return BatchStarted.model_validate(_started(created, made_out))


async def _get(session: SessionDep, account_id: str, batch_id: str) -> Batch:
    batch = await session.get(Batch, batch_id)
    if batch is None or batch.account_id != account_id:
        raise NotFound(f"Batch {batch_id} not found.")
    return batch


@router.get("/batches", dependencies=[RequireScope("classify")])
async def list_batches(
    account: CurrentAccount, session: SessionDep, page: PageDep
) -> Paginated[BatchSummary]:
    """List this account's batches, newest first."""
    query = (
        select(Batch)
        .where(Batch.account_id == account.id)
        .order_by(col(Batch.created_at).desc(), col(Batch.id))
    )
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=[BatchSummary(**service.summary(b)) for b in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/batches/{batch_id}", dependencies=[RequireScope("classify")])
async def get_batch(
    batch_id: BatchId,
    account: CurrentAccount,
    session: SessionDep,
    status: Annotated[
        str | None, Query(pattern="^(pending|running|completed|failed)$", description="Only these")
    ] = None,
) -> BatchOut:
    """Show a batch's progress and every item with its result."""
    batch = await _get(session, account.id, batch_id)
    query = select(BatchItem).where(BatchItem.batch_id == batch.id)
    if status:
        query = query.where(BatchItem.status == status)
    items = (await session.exec(query.order_by(col(BatchItem.position)))).all()
    ids = [i.classification_id for i in items if i.classification_id]
    results: dict[str, Classification] = {}
    for start in range(0, len(ids), 1000):
        rows = await session.exec(
            select(Classification).where(
                col(Classification.id).in_(ids[start : start + 1000]),
                Classification.account_id == account.id,
            )
        )
        results.update({c.id: c for c in rows.all()})
    doc_ids = list({i.document_id for i in items})
    names: dict[str, str] = {}
    for start in range(0, len(doc_ids), 1000):
        found = await session.exec(
            select(Document.id, Document.filename).where(
                col(Document.id).in_(doc_ids[start : start + 1000])
            )
        )
        names.update(dict(found.all()))
    return BatchOut(
        **service.summary(batch),
        labels=[s["label"] for s in batch.classification_schema],
        items=[
            BatchItemOut.model_validate(
                {
                    **item_view(item, results.get(item.classification_id or "")),
                    "filename": names.get(item.document_id),
                }
            )
            for item in items
        ],
    )
