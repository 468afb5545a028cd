"""POST /v1/split: find the documents inside one file and label each."""

from dataclasses import replace

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from backend.api.classify import IdempotencyKey
from backend.billing import idempotency
from backend.classification.schema import SchemaItem, validate_schema
from backend.classification.spec import ModeFields, inline_spec
from backend.classifiers import service as classifiers
from backend.deps import CurrentAccount, SessionDep, StateDep
from backend.splitting.service import split_document

router = APIRouter(tags=["split"])


class SplitIn(ModeFields):
    document_id: str = Field(max_length=64)
    classification_schema: list[SchemaItem] | None = None
    classifier_id: str | None = Field(default=None, max_length=64)
    query_model: str | None = Field(default=None, max_length=200)
    page_range: str | None = Field(default=None, max_length=200)
    create_documents: bool = False

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


@router.post("/split")
async def split(
    body: SplitIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> SplitOut:
    """Split a multi-document file into segments, each with its label and confidence scores."""
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
