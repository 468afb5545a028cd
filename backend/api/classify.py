"""POST /v1/classify: DocumentPro-compatible classification with an inline schema."""

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.api.direct import DirectRoute, json_body, serves_directly
from backend.billing import idempotency
from backend.classification.fastpath import SlowPathNeeded, classify_fast
from backend.classification.schema import SchemaItem, validate_schema
from backend.classification.service import (
    ClassifyResponse,
    classification_response,
    run_classification,
)
from backend.classification.spec import ModeFields, RunSpec, inline_spec
from backend.deps import (
    RequireScope,
    ScopeCheck,
    api_key_header,
    app_state,
    check_classifier,
    get_current_key,
)
from backend.errors import InvalidApiKey
from backend.models import Account, ApiKey
from backend.reviews import service as reviews
from backend.state import AppState

router = APIRouter(tags=["classify"], route_class=DirectRoute)

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


# The scope check gives the key (one dependency where CurrentKey beside it made two).
ClassifyKey = Annotated[ApiKey, RequireScope("classify")]
_SCOPE = ScopeCheck("classify")


async def classify_directly(request: Request) -> Response | None:
    """The route's common case without FastAPI's dependency resolution (backend/api/direct.py):
    the same checks, in the same order, as the dependencies below."""
    body = await json_body(request, ClassifyRequestBody)
    if body is None:
        return None  # FastAPI's handler gives its own error
    key = await _SCOPE(request, await get_current_key(request, await api_key_header(request)))
    return await _classify(request, body, key, request.headers.get("idempotency-key"))


@router.post("/classify", response_model=ClassifyResponse)
@serves_directly(classify_directly)
async def classify(
    request: Request,
    body: ClassifyRequestBody,
    key: ClassifyKey,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Classify a processed document against an inline schema."""
    return await _classify(request, body, key, idempotency_key)


async def _classify(
    request: Request, body: ClassifyRequestBody, key: ApiKey, idempotency_key: str | None
) -> Response:
    check_classifier(request, None)
    # No session dependency: the fast path has no use for one (the slow path opens its own).
    out = await classify_document(body, key.account_id, None, app_state(request), idempotency_key)
    # Serialized once, by pydantic-core, straight to bytes (no re-validation on the way out).
    return Response(out.model_dump_json(), media_type="application/json")


async def classify_document(
    body: ClassifyRequestBody,
    account_id: str,
    session: AsyncSession | None,
    state: AppState,
    idempotency_key: str | None = None,
) -> ClassifyResponse:
    """The route's work (the MCP tool calls it too, in its own session; the route passes None)."""
    spec = inline_spec(
        state,
        labels=validate_schema(body.classification_schema, state.settings),
        model=body.query_model,
        page_range=body.page_range,
        instructions=body.instructions,
        modes=body.modes_over(),
    )
    # The fast path covers the common case (text input, pages already read); anything else
    # (page images, OCR on demand, idempotent retries) takes run_classification. The input mode
    # is already resolved here (a model whose default is image never takes the fast path).
    if idempotency_key is None and state.fast_store is not None and spec.modes.input_mode == "text":
        try:
            record = await classify_fast(
                state, state.fast_store, spec, account_id=account_id, document_id=body.document_id
            )
        except SlowPathNeeded:
            pass
        else:
            if record.review_status == reviews.PENDING:
                # Rare next to the hot path: the review_required event in a short transaction
                # of its own, right after the result's (its event_key makes it once only).
                async with state.sessionmaker() as own:
                    owner = await own.get(Account, account_id)
                    if owner is not None:
                        await reviews.announce(own, state, owner, record)
                        await state.queue.commit(own)
            return classification_response(record)
    if session is None:
        async with state.sessionmaker() as own:
            return await _classify_slow(body, spec, account_id, own, state, idempotency_key)
    return await _classify_slow(body, spec, account_id, session, state, idempotency_key)


async def _classify_slow(
    body: ClassifyRequestBody,
    spec: RunSpec,
    account_id: str,
    session: AsyncSession,
    state: AppState,
    idempotency_key: str | None,
) -> ClassifyResponse:
    """run_classification in `session`, once per idempotency key."""
    account = await session.get(Account, account_id)
    if account is None:
        raise InvalidApiKey("Invalid or revoked API key.")

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
