"""POST /v1/split's work: classify each page, find the boundaries, score the segments, charge."""

import asyncio
import time
from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import LabelledText, LabelSpec
from backend.billing import ledger
from backend.classification.engine import classify_pages
from backend.classification.schema import schema_json
from backend.classification.service import release_connection
from backend.documents.page_range import format_pages, parse_page_range
from backend.documents.queries import get_pages, get_processed_document
from backend.models import Account, Classification, Document, Page, new_id, utcnow
from backend.splitting.boundaries import PageSignal, segment_starts
from backend.state import AppState

PAGE_CONCURRENCY = 4


def _average(distributions: Sequence[dict[str, float]]) -> dict[str, float]:
    labels = distributions[0].keys()
    mean = {label: sum(d[label] for d in distributions) / len(distributions) for label in labels}
    total = sum(mean.values())
    return {label: round(v / total, 4) for label, v in mean.items()}


async def split_document(
    session: AsyncSession,
    state: AppState,
    *,
    account: Account,
    document_id: str,
    labels: list[LabelSpec],
    model: str | None,
    page_range: str | None = None,
    instructions: str | None = None,
    examples: Sequence[LabelledText] = (),
    training_key: str | None = None,
    classifier_id: str | None = None,
    classifier_version: int | None = None,
    create_documents: bool = False,
) -> Classification:
    """Segments of a multi-document file, stored and charged like a classification. Flushes only."""
    started = time.perf_counter()
    model = model or state.settings.resolved_default_model
    _, info = state.backends.resolve(model)
    document = await get_processed_document(session, account_id=account.id, document_id=document_id)
    numbers = parse_page_range(page_range, document.num_pages)
    pages = await get_pages(session, document_id=document.id, page_numbers=numbers)
    credits = len(numbers) * info.credits_per_page
    request_id = new_id()
    await release_connection(session)
    await ledger.reserve(
        state.sessionmaker, account_id=account.id, request_id=request_id, amount=credits
    )
    try:
        limiter = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def one(page: Page):  # noqa: ANN202
            async with limiter:
                result, _ = await classify_pages(
                    state,
                    model=model,
                    labels=labels,
                    pages=[(page.page_number, page.text)],
                    instructions=instructions,
                    examples=examples,
                    training_key=training_key,
                )
                return result

        results = await asyncio.gather(*[one(p) for p in pages])
        signals = [PageSignal(r.label, p.text) for r, p in zip(results, pages, strict=True)]
        starts = segment_starts(signals)
        bounds = list(zip(starts, [*starts[1:], len(pages)], strict=True))
        segments = []
        for first, end in bounds:
            scores = _average([r.scores for r in results[first:end]])
            segments.append(
                {
                    "pages": format_pages([p.page_number for p in pages[first:end]]),
                    "classification": max(scores, key=lambda k: scores[k]),
                    "confidence_scores": scores,
                    "document_id": None,
                }
            )
        if create_documents:
            for segment, (first, end) in zip(segments, bounds, strict=True):
                segment["document_id"] = await _store_segment(session, document, pages[first:end])
        overall = _average([r.scores for r in results])
        record = Classification(
            id=request_id,
            account_id=account.id,
            document_id=document.id,
            kind="split",
            classifier_id=classifier_id,
            classifier_version=classifier_version,
            model=model,
            classification_schema=schema_json(labels),
            page_range=page_range,
            pages_used=numbers,
            classification=segments[0]["classification"],
            confidence_scores=overall,
            confidence_method=results[0].confidence_method,
            result={"segments": segments},
            credits_used=credits,
            num_pages=len(numbers),
            prompt_tokens=sum(r.prompt_tokens for r in results),
            completion_tokens=sum(r.completion_tokens for r in results),
        )
        session.add(record)
        await ledger.charge(
            session,
            account_id=account.id,
            request_id=request_id,
            amount=credits,
            model=model,
            pages=len(numbers),
            note="split",
        )
        record.duration = round(time.perf_counter() - started, 3)
        await session.flush()
    except BaseException:
        await session.rollback()
        await ledger.release(state.sessionmaker, request_id=request_id)
        raise
    return record


async def _store_segment(session: AsyncSession, parent: Document, pages: list[Page]) -> str:
    """A new processed document holding these pages' text, so it can be routed on by id with no
    re-extraction. It keeps no file of its own: its text is what classification uses."""
    child = Document(
        account_id=parent.account_id,
        filename=f"{parent.filename} (pages {format_pages([p.page_number for p in pages])})",
        content_type=parent.content_type,
        kind=parent.kind,
        size_bytes=0,
        sha256=parent.sha256,
        storage_path="",
        num_pages=len(pages),
        status="processed",
        processed_at=utcnow(),
        parent_document_id=parent.id,
    )
    session.add(child)
    await session.flush()
    for number, page in enumerate(pages, start=1):
        session.add(
            Page(
                document_id=child.id,
                page_number=number,
                text=page.text,
                chars=page.chars,
                ocr=page.ocr,
                width=page.width,
                height=page.height,
            )
        )
    await session.flush()
    return child.id
