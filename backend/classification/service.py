"""A paid classification of one document: pages, credits, model, stored result - in that order."""

import time
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import ClassifyResult
from backend.billing import ledger
from backend.classification.engine import classify_pages
from backend.classification.schema import schema_json
from backend.classification.spec import Modes, RunSpec
from backend.classification.vision import (
    image_pages,
    run_pending_ocr,
    text_pages,
    with_example_images,
)
from backend.documents.page_images import page_images
from backend.documents.page_range import parse_page_range
from backend.documents.queries import get_pages, get_processed_document
from backend.models import Account, Classification, Document, Page, built_row, new_id
from backend.observability import record_usage
from backend.reviews import service as reviews
from backend.state import AppState


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int = Field(
        default=0,
        description="Of the prompt tokens, those of page images (the provider's formula, as "
        "LiteLLM counts it)",
    )


class ClassifyResponse(BaseModel):
    request_id: str
    document_id: str
    classifier_id: str | None = None
    classification: str = Field(description="The label with the highest score")
    confidence_scores: dict[str, float] = Field(
        description="Every label of the schema, each in [0, 1], summing to 1 (multi_label: "
        "an independent probability per label)"
    )
    classifications: list[str] | None = Field(
        default=None,
        description="multi_label only: every label whose probability reaches its threshold, "
        "highest first",
    )
    request_status: str
    credits_used: int
    num_pages: int
    duration: float = Field(description="Seconds, server side")
    model: str
    classifier_version: int | None = None
    confidence_method: str | None = None
    usage: Usage
    pages_used: list[int]
    image_pages: list[int] = Field(
        default_factory=list, description="The pages sent to the model as images"
    )
    modes: Modes = Field(default_factory=Modes, description="The modes this result was made with")
    review_status: str | None = Field(
        default=None,
        description="pending (confidence under the review threshold: in GET /v1/reviews), "
        "auto_accepted, or reviewed",
    )
    created_at: datetime


def result_record(
    spec: RunSpec,
    result: ClassifyResult,
    *,
    request_id: str,
    account_id: str,
    document_id: str,
    numbers: list[int],
    credits: int,
    kind: str,
    evaluation_id: str | None = None,
    images: dict[int, bytes] | None = None,
) -> Classification:
    """The stored result of one classification (both classify paths build it here), marked for
    review by the run's threshold."""
    scores = spec.calibrated(result.scores)
    record = built_row(
        Classification,
        id=request_id,
        account_id=account_id,
        document_id=document_id,
        kind=kind,
        classifier_id=spec.classifier_id,
        classifier_version=spec.classifier_version,
        evaluation_id=evaluation_id,
        model=spec.model,
        classification_schema=schema_json(spec.labels),
        page_range=spec.page_range,
        pages_used=numbers,
        classification=max(scores, key=lambda k: scores[k]),
        confidence_scores=scores,
        confidence_method=result.confidence_method,
        credits_used=credits,
        num_pages=len(numbers),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        image_tokens=int(result.details.get("image_tokens", 0) or 0),
        # What the backend sent (an LLM leaves out images past the budget), else all asked.
        image_pages=result.details.get("image_pages") or sorted(images or {}) or None,
        cost_usd=result.cost_usd,
        examples_hash=spec.examples_hash,
        modes=spec.modes.stored(),
        **reviews.review_fields(kind, scores, None, spec),
    )
    return record


async def run_classification(
    session: AsyncSession,
    state: AppState,
    spec: RunSpec,
    *,
    account: Account,
    document_id: str,
    kind: str = "classify",
    evaluation_id: str | None = None,
    request_id: str | None = None,
) -> Classification:
    """Classify a processed document as `spec` says and charge for it. Flushes only: the caller
    commits.

    Credits are held before the model is called (own transaction) and charged here beside the
    result; if anything fails the hold is released and nothing is charged. A caller that may
    retry (a batch item) passes its own `request_id`: the result row and the debit are keyed by
    it, so a second run can never store a second result or charge twice.
    """
    held = await hold_credits_for_pages(
        session, state, spec, account=account, document_id=document_id, request_id=request_id
    )
    request_id = held.request_id
    try:
        spec = await with_example_images(state, spec, account.id)
        images = {}
        if held.image_numbers:
            images = await page_images(state, held.document, held.image_numbers)
        result = await classify_pages(
            state,
            spec,
            [(p.page_number, p.text) for p in held.pages],
            document_id=held.document.id,
            images=images,
        )
        record = result_record(
            spec,
            result,
            request_id=request_id,
            account_id=account.id,
            document_id=held.document.id,
            numbers=held.numbers,
            credits=held.credits,
            kind=kind,
            evaluation_id=evaluation_id,
            images=images,
        )
        await store_and_charge(session, record, held)
        await reviews.announce(session, state, account, record)
    except BaseException:
        await session.rollback()
        await ledger.release(state.sessionmaker, request_id=request_id)
        raise
    record_charged_usage(spec, result, held.credits)
    return record


def record_charged_usage(spec: RunSpec, result: ClassifyResult, credits: int) -> None:
    """The token and credit metrics of one stored, charged classification (either path)."""
    record_usage(
        spec.model,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        credits=credits,
    )


@dataclass
class HeldPages:
    """A request's pages with their credits held: what a paid model call works on."""

    document: Document
    numbers: list[int]
    pages: list[Page]
    model: str
    credits: int
    request_id: str
    started: float
    image_numbers: list[int] = field(default_factory=list)  # pages sent as images


async def hold_credits_for_pages(
    session: AsyncSession,
    state: AppState,
    spec: RunSpec,
    *,
    account: Account,
    document_id: str,
    request_id: str | None = None,
) -> HeldPages:
    """Read the spec's pages of the document and hold their credits in a transaction of its own
    (402 when the balance cannot cover them). The spec's model was resolved when it was built."""
    started = time.perf_counter()
    document = await get_processed_document(session, account_id=account.id, document_id=document_id)
    numbers = parse_page_range(spec.page_range, document.num_pages)
    pages = await get_pages(session, document_id=document.id, page_numbers=numbers)
    images = image_pages(spec, pages, state.settings.min_text_chars)
    # A page sent as an image costs the model's image rate, the others its text rate.
    credits = (len(numbers) - len(images)) * spec.info.credits_per_page + len(
        images
    ) * spec.info.image_page_credits
    request_id = request_id or new_id()
    await release_connection(session)
    # Pages uploaded with ocr=on_demand are read by OCR now if their text is to be sent.
    await run_pending_ocr(state, document, text_pages(spec, pages, images))
    await ledger.reserve(
        state.sessionmaker, account_id=account.id, request_id=request_id, amount=credits
    )
    return HeldPages(
        document, numbers, pages, spec.model, credits, request_id, started, image_numbers=images
    )


async def store_and_charge(session: AsyncSession, record: Classification, held: HeldPages) -> None:
    """Add the result and debit its held credits in the caller's transaction: both or neither."""
    record.duration = round(time.perf_counter() - held.started, 3)
    session.add(record)
    await ledger.charge(
        session,
        account_id=record.account_id,
        request_id=record.id,
        amount=record.credits_used,
        model=record.model,
        pages=record.num_pages,
        note=record.kind,
    )


async def release_connection(session: AsyncSession) -> None:
    """End the session's read-only transaction so it holds no pooled connection (and, on SQLite,
    no snapshot) while the model works; the session opens a new one when it writes the result."""
    if not (session.new or session.dirty or session.deleted):
        await session.commit()


MULTI_LABEL_THRESHOLD = 0.5


def labels_over_threshold(scores: dict[str, float]) -> list[str]:
    """Multi-label: the labels a document is, most probable first."""
    chosen = [label for label, p in scores.items() if p >= MULTI_LABEL_THRESHOLD]
    return sorted(chosen, key=lambda label: -scores[label])


def classification_response(c: Classification) -> ClassifyResponse:
    scores = c.confidence_scores or {}
    modes = Modes.frozen(c.modes)
    return ClassifyResponse(
        request_id=c.id,
        document_id=c.document_id,
        classifier_id=c.classifier_id,
        classification=c.classification or "",
        confidence_scores=scores,
        classifications=labels_over_threshold(scores) if modes.multi_label else None,
        request_status=c.request_status,
        credits_used=c.credits_used,
        num_pages=c.num_pages,
        duration=c.duration,
        model=c.model,
        classifier_version=c.classifier_version,
        confidence_method=c.confidence_method,
        usage=Usage(
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            image_tokens=c.image_tokens,
        ),
        pages_used=list(c.pages_used or []),
        image_pages=list(c.image_pages or []),
        modes=modes,
        review_status=c.review_status,
        created_at=c.created_at,
    )
