"""POST /v1/classify: DocumentPro-compatible classification with an inline schema."""

from typing import Annotated

from fastapi import APIRouter, Header
from pydantic import Field

from backend.billing import idempotency
from backend.classification.schema import SchemaItem, validate_schema
from backend.classification.service import (
    ClassifyResponse,
    classification_response,
    run_classification,
)
from backend.classification.spec import ModeFields, inline_spec
from backend.deps import CurrentAccount, SessionDep, StateDep

router = APIRouter(tags=["classify"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", description="Retry safely: same key, same result, charged once"
    ),
]


class ClassifyRequestBody(ModeFields):
    document_id: str = Field(max_length=64)
    classification_schema: list[SchemaItem]
    page_range: str | None = Field(default=None, max_length=200, examples=["1-2"])
    query_model: str | None = Field(default=None, max_length=200, examples=["gpt-4o-mini"])
    instructions: str | None = Field(default=None, max_length=4000)


@router.post("/classify")
async def classify(
    body: ClassifyRequestBody,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> ClassifyResponse:
    """Classify a processed document against an inline schema."""
    spec = inline_spec(
        state,
        labels=validate_schema(body.classification_schema, state.settings),
        model=body.query_model,
        page_range=body.page_range,
        instructions=body.instructions,
        modes=body.modes_over(),
    )

    async def work() -> dict:
        record = await run_classification(
            session, state, spec, account=account, document_id=body.document_id
        )
        return classification_response(record).model_dump(mode="json")

    result = await idempotency.run(
        state.sessionmaker,
        session,
        account_id=account.id,
        key=idempotency_key,
        endpoint="classify",
        payload=body.model_dump(),
        work=work,
    )
    await state.queue.after_commit(session)  # review_required webhook jobs (in memory)
    return ClassifyResponse.model_validate(result)
