"""POST /v1/split's work: classify each page, find the documents, label them, charge, store."""

import asyncio

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import ClassifyResult
from backend.backends.llm.confidence import round_distribution
from backend.billing import ledger
from backend.classification.engine import classify_pages
from backend.classification.schema import schema_json
from backend.classification.service import hold_credits_for_pages, store_and_charge
from backend.classification.spec import RunSpec
from backend.db import begin_write
from backend.documents.page_range import format_pages
from backend.models import Account, Classification, Page
from backend.reviews import service as reviews
from backend.splitting.boundaries import PageEvidence, gap_scores, segment
from backend.splitting.documents import SegmentWriter
from backend.state import AppState

# Pages classified at once: enough to keep a remote model busy, few enough not to flood it.
PAGE_CONCURRENCY = 4


async def classify_each_page(
    state: AppState, spec: RunSpec, pages: list[Page]
) -> list[ClassifyResult]:
    """One classification per page (each page gets the whole page-text budget), a few at once."""
    limiter = asyncio.Semaphore(PAGE_CONCURRENCY)

    async def one(page: Page) -> ClassifyResult:
        async with limiter:
            return await classify_pages(state, spec, [(page.page_number, page.text)])

    try:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the other pages
            tasks = [group.create_task(one(page)) for page in pages]
    except BaseExceptionGroup as failed:  # report the model's error itself (e.g. 502), not a group
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def plan_segments(pages: list[Page], results: list[ClassifyResult]) -> list[dict]:
    """Segments as the response shows them, with the 0-based page slice each covers."""
    evidence = [
        PageEvidence(r.scores, p.text, (p.width, p.height) if p.width and p.height else None)
        for p, r in zip(pages, results, strict=True)
    ]
    gaps = gap_scores(evidence)
    out = []
    for plan in segment(evidence, gaps):
        scores = round_distribution(plan.scores)
        out.append(
            {
                "pages": format_pages([p.page_number for p in pages[plan.first : plan.end]]),
                "classification": max(scores, key=lambda k: scores[k]),
                "confidence_scores": scores,
                "document_id": None,
                "slice": (plan.first, plan.end),
                # Why a document starts here: the log-odds of each boundary signal.
                "boundary_signals": gaps[plan.first - 1].reasons if plan.first else None,
            }
        )
    return out


async def split_document(
    session: AsyncSession,
    state: AppState,
    spec: RunSpec,
    *,
    account: Account,
    document_id: str,
    create_documents: bool = False,
) -> Classification:
    """Segments of a multi-document file, stored and charged like one classification (credits
    per page, one ledger debit). Flushes only: the caller commits."""
    held = await hold_credits_for_pages(
        session, state, spec, account=account, document_id=document_id
    )
    pages, request_id = held.pages, held.request_id
    writer = SegmentWriter(session, state, held.document)
    try:
        results = await classify_each_page(state, spec, pages)
        segments = plan_segments(pages, results)
        await begin_write(session)  # the documents and the charge are one write transaction
        for item in segments:
            first, end = item.pop("slice")
            if create_documents:
                item["document_id"] = await writer.write(pages[first:end])
        record = Classification(
            id=request_id,
            account_id=account.id,
            document_id=held.document.id,
            kind="split",
            classifier_id=spec.classifier_id,
            classifier_version=spec.classifier_version,
            model=spec.model,
            classification_schema=schema_json(spec.labels),
            page_range=spec.page_range,
            pages_used=held.numbers,
            # The record's own label and scores are the first segment's (the file's lead document).
            classification=segments[0]["classification"],
            confidence_scores=segments[0]["confidence_scores"],
            confidence_method=results[0].confidence_method,
            result={
                "segments": segments,
                "page_scores": [
                    {"page": p.page_number, "confidence_scores": r.scores}
                    for p, r in zip(pages, results, strict=True)
                ],
            },
            credits_used=held.credits,
            num_pages=len(held.numbers),
            prompt_tokens=sum(r.prompt_tokens for r in results),
            completion_tokens=sum(r.completion_tokens for r in results),
            cost_usd=_total_cost(results),
            examples_hash=spec.examples_hash,
            modes=spec.modes.stored(),
        )
        reviews.mark(record, spec)
        await store_and_charge(session, record, held)
        await reviews.announce(session, state, account, record)
    except BaseException:
        await session.rollback()
        await ledger.release(state.sessionmaker, request_id=request_id)
        await writer.discard()
        raise
    return record


def _total_cost(results: list[ClassifyResult]) -> float | None:
    costs = [r.cost_usd for r in results if r.cost_usd is not None]
    return round(sum(costs), 6) if costs else None
