"""POST /v1/split: find the documents inside one file and label each."""

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from backend.api.classify import IdempotencyKey
from backend.billing import idempotency
from backend.classification.schema import SchemaItem, validate_schema
from backend.classifiers import service as classifiers
from backend.deps import CurrentAccount, SessionDep, StateDep
from backend.splitting.service import split_document

router = APIRouter(tags=["split"])


class SplitIn(BaseModel):
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


@router.post("/split")
async def split(
    body: SplitIn,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> SplitOut:
    """Split a multi-document file into segments, each with its label and confidence scores."""
    options: dict = {}
    if body.classifier_id:
        classifier = await classifiers.get_classifier(
            session, account_id=account.id, classifier_id=body.classifier_id
        )
        plan = await classifiers.plan_run(session, state, classifier, query_model=body.query_model)
        labels, model = plan.snapshot.labels, plan.model
        options = {
            "instructions": plan.snapshot.version.instructions,
            "examples_for": plan.examples_for if plan.examples else None,
            "training_key": plan.training_key,
            "classifier_id": classifier.id,
            "classifier_version": plan.snapshot.version.version,
            "examples_hash": plan.examples_hash,
        }
    else:
        labels = validate_schema(body.classification_schema or [], state.settings)
        model = body.query_model

    async def work() -> dict:
        record = await split_document(
            session,
            state,
            account=account,
            document_id=body.document_id,
            labels=labels,
            model=model,
            # Not the classifier's default page_range: that picks pages to decide one document's
            # label by, while a split looks at every page it is given.
            page_range=body.page_range,
            create_documents=body.create_documents,
            **options,
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
    return SplitOut.model_validate(result)
