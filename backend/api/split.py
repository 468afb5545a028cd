"""POST /v1/split: find the documents inside one file and label each."""

from dataclasses import replace

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator
from sqlmodel import col, select

from backend.api.classify import IdempotencyKey
from backend.api.documents import DocumentId, DocumentOut, documents_out
from backend.billing import idempotency
from backend.classification.schema import SchemaItem, validate_schema
from backend.classification.spec import ModeFields, Modes, inline_spec
from backend.classifiers import service as classifiers
from backend.db import begin_write
from backend.deps import CurrentAccount, RequireScope, SessionDep, StateDep, check_classifier
from backend.documents.page_range import parse_page_range
from backend.documents.queries import get_pages, get_processed_document
from backend.errors import InvalidRequest
from backend.models import Document
from backend.splitting.documents import SegmentWriter
from backend.splitting.service import split_document

router = APIRouter(tags=["split"])


class SplitIn(ModeFields):
    document_id: str = Field(max_length=64)
    classification_schema: list[SchemaItem] | None = None
    classifier_id: str | None = Field(default=None, max_length=64)
    query_model: str | None = Field(default=None, max_length=200)
    page_range: str | None = Field(default=None, max_length=200)
    create_documents: bool = Field(default=False, strict=True)
    group_attachments: bool = Field(
        strict=True,
        default=False,
        description="One segment for a document and its attachments: a Form 1040 with the "
        "schedules that follow it (SCHEDULE X (Form 1040), 'Attach to Form 1040'), a contract "
        "with its exhibits and annexes. Off: each schedule is a segment of its own.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "SplitIn":
        if (self.classifier_id is None) == (self.classification_schema is None):
            raise ValueError("give exactly one of classifier_id and classification_schema")
        return self


class Segment(BaseModel):
    pages: str = Field(description='The pages of the file it spans, e.g. "1-2"')
    classification: str
    confidence_scores: dict[str, float]
    document_id: str | None = Field(
        default=None, description="The new document holding these pages (create_documents)"
    )
    boundary_signals: dict[str, float] | None = Field(
        default=None,
        description="Why a document starts at its first page: log-odds of each signal",
    )
    boundary_confidence: float | None = Field(
        default=None,
        description="Probability that exactly these pages form one document (a boundary "
        "before and after them, none inside), from the boundary model and the page labels",
    )
    review: bool = Field(
        default=False,
        description="boundary_confidence is below the server's DOCSIFT_SPLIT_REVIEW_THRESHOLD",
    )
    attachments: list[str] | None = Field(
        default=None,
        description="group_attachments: the pages of each attachment grouped into this segment",
    )
    review_status: str | None = Field(
        default=None, description="pending (under the review threshold) or auto_accepted"
    )


class SplitOut(BaseModel):
    request_id: str
    document_id: str
    classifier_id: str | None
    classifier_version: int | None
    segments: list[Segment]
    credits_used: int
    num_pages: int
    duration: float
    model: str
    review_status: str | None = Field(
        default=None, description="pending while any segment awaits review"
    )
    modes: Modes | None = Field(
        default=None, description="The modes the pages were classified with (input_mode resolved)"
    )
    image_pages: list[int] | None = Field(
        default=None, description="The pages sent to the model as images"
    )


@router.post("/split", dependencies=[RequireScope("classify")])
async def split(
    request: Request,
    body: SplitIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> SplitOut:
    """Split a multi-document file into segments, each with its label and confidence scores."""
    check_classifier(request, body.classifier_id)
    if body.classifier_id:
        classifier = await classifiers.get_classifier(
            session, account_id=account.id, classifier_id=body.classifier_id
        )
        spec = await classifiers.run_spec(
            session, state, classifier, query_model=body.query_model, overrides=body
        )
        # Not the classifier's default page_range: that picks pages to decide one document's
        # label by, while a split looks at every page it is given.
        spec = replace(spec, page_range=body.page_range)
    else:
        spec = inline_spec(
            state,
            labels=validate_schema(body.classification_schema or [], state.settings),
            model=body.query_model,
            page_range=body.page_range,
            modes=body.modes_over(),
        )

    async def work() -> dict:
        record = await split_document(
            session,
            state,
            spec,
            account=account,
            document_id=body.document_id,
            create_documents=body.create_documents,
            group_attachments=body.group_attachments,
        )
        return SplitOut(
            request_id=record.id,
            document_id=record.document_id,
            classifier_id=record.classifier_id,
            classifier_version=record.classifier_version,
            segments=record.result["segments"],
            credits_used=record.credits_used,
            num_pages=record.num_pages,
            duration=record.duration,
            model=record.model,
            review_status=record.review_status,
            modes=Modes.frozen(record.modes),
            image_pages=record.image_pages or [],
        ).model_dump(mode="json")

    result = await idempotency.run(
        state.sessionmaker,
        session,
        account_id=account.id,
        key=idempotency_key,
        endpoint="split",
        payload=body.model_dump(),
        work=work,
    )
    await state.queue.after_commit(session)  # review_required webhook jobs (in memory)
    return SplitOut.model_validate(result)


class SegmentIn(BaseModel):
    pages: str = Field(min_length=1, max_length=200, examples=["1-2"])


class SegmentsIn(BaseModel):
    segments: list[SegmentIn] = Field(min_length=1, max_length=500)


class SegmentsOut(BaseModel):
    documents: list[DocumentOut]


@router.post(
    "/documents/{document_id}/segments",
    status_code=201,
    tags=["documents"],
    dependencies=[RequireScope("documents:write")],
)
async def create_segments(
    document_id: DocumentId,
    body: SegmentsIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
) -> SegmentsOut:
    """Cut a processed document into new documents, one per page range (e.g. a split's segments
    after a person adjusted them). Nothing is classified, so nothing is charged."""
    parent = await get_processed_document(session, account_id=account.id, document_id=document_id)
    pages = {p.page_number: p for p in await get_pages(session, document_id=parent.id)}
    wanted = []
    for number, segment in enumerate(body.segments, start=1):
        try:
            numbers = parse_page_range(segment.pages, parent.num_pages)
        except InvalidRequest as error:
            raise InvalidRequest(f"segments[{number - 1}].pages: {error.message}") from None
        wanted.append([pages[n] for n in numbers if n in pages])
    writer = SegmentWriter(session, state, parent)
    try:
        await begin_write(session)
        ids = [await writer.write(chosen) for chosen in wanted]
        await session.commit()
    except BaseException:
        await session.rollback()
        await writer.discard()
        raise
    made = (await session.exec(select(Document).where(col(Document.id).in_(ids)))).all()
    order = {doc_id: i for i, doc_id in enumerate(ids)}
    made = sorted(made, key=lambda d: order[d.id])
    return SegmentsOut(documents=await documents_out(session, list(made)))
