"""POST /v1/split's work: classify each page, find the documents, classify each document (a
segment of two or more pages, its pages joined) for its label, charge, store."""

import asyncio
from dataclasses import replace

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.base import ClassifyResult
from backend.backends.llm.confidence import round_distribution
from backend.billing import ledger
from backend.classification.engine import classify_pages
from backend.classification.schema import schema_json
from backend.classification.service import hold_credits_for_pages, store_and_charge
from backend.classification.spec import RunSpec
from backend.db import begin_write
from backend.documents.page_images import page_images
from backend.documents.page_range import format_pages
from backend.models import Account, Classification, Page
from backend.reviews import service as reviews
from backend.splitting import attachments
from backend.splitting.boundaries import Gap, PageEvidence, SegmentPlan, gap_scores, segment
from backend.splitting.documents import SegmentWriter
from backend.splitting.labels import combined_scores
from backend.state import AppState

# Pages classified at once: enough to keep a remote model busy, few enough not to flood it.
PAGE_CONCURRENCY = 4


async def _classify_spans(
    state: AppState, spec: RunSpec, spans: list[list[Page]], images: dict[int, bytes] | None
) -> list[ClassifyResult]:
    """One classification per span of pages (its pages' text joined, as /v1/classify reads a
    document), a few at once; a page in `images` goes as its image too (input_mode)."""
    images = images or {}
    limiter = asyncio.Semaphore(PAGE_CONCURRENCY)

    async def one(span: list[Page]) -> ClassifyResult:
        own = {p.page_number: images[p.page_number] for p in span if p.page_number in images}
        async with limiter:
            return await classify_pages(
                state, spec, [(p.page_number, p.text) for p in span], images=own or None
            )

    try:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the others
            tasks = [group.create_task(one(span)) for span in spans]
    except BaseExceptionGroup as failed:  # report the model's error itself (e.g. 502), not a group
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def classify_each_page(
    state: AppState, spec: RunSpec, pages: list[Page], images: dict[int, bytes] | None = None
) -> list[ClassifyResult]:
    """One classification per page: each page gets the whole page-text budget."""
    return await _classify_spans(state, spec, [[page] for page in pages], images)


def find_segments(
    pages: list[Page], results: list[ClassifyResult]
) -> tuple[list[SegmentPlan], list[Gap]]:
    """The segmentation from the pages' classifications and texts, and the gaps' evidence."""
    evidence = [
        PageEvidence(r.scores, p.text, (p.width, p.height) if p.width and p.height else None)
        for p, r in zip(pages, results, strict=True)
    ]
    gaps = gap_scores(evidence)
    return segment(evidence, gaps), gaps


async def classify_segments(
    state: AppState,
    spec: RunSpec,
    pages: list[Page],
    plans: list[SegmentPlan],
    images: dict[int, bytes] | None = None,
) -> list[ClassifyResult | None]:
    """Each segment of two or more pages classified as one document; None for a one-page
    segment, whose page classification is that same request already."""
    whole = [plan for plan in plans if plan.end - plan.first >= 2]
    done = iter(await _classify_spans(state, spec, [pages[p.first : p.end] for p in whole], images))
    return [next(done) if plan.end - plan.first >= 2 else None for plan in plans]


def labelled(
    plans: list[SegmentPlan],
    results: list[ClassifyResult],
    segment_results: list[ClassifyResult | None],
) -> list[SegmentPlan]:
    """The plans with each segment's label and scores from its own classification (labels.py)."""
    out = []
    for plan, own in zip(plans, segment_results, strict=True):
        pages = [r.scores for r in results[plan.first : plan.end]]
        scores = combined_scores(own.scores if own else None, pages)
        out.append(replace(plan, label=max(scores, key=lambda k: scores[k]), scores=scores))
    return out


def plan_segments(
    pages: list[Page],
    plans: list[SegmentPlan],
    gaps: list[Gap],
    *,
    group_attachments: bool = False,
    review_threshold: float = 0.8,
) -> list[dict]:
    """Segments as the response shows them, with the 0-based page slice each covers."""
    grouped = (
        attachments.groups([pages[plan.first].text for plan in plans])
        if group_attachments
        else [[i] for i in range(len(plans))]
    )
    out = []
    for members in grouped:
        # A group is its main document's label and scores, spanning its attachments' pages.
        main, parts = plans[members[0]], [plans[i] for i in members]
        first, end = main.first, parts[-1].end
        scores = round_distribution(main.scores)
        confidence = round(min(p.boundary_confidence for p in parts), 4)
        out.append(
            {
                "pages": format_pages([p.page_number for p in pages[first:end]]),
                "classification": max(scores, key=lambda k: scores[k]),
                "confidence_scores": scores,
                "boundary_confidence": confidence,
                "review": confidence < review_threshold,
                "document_id": None,
                "slice": (first, end),
                # Why a document starts here: the log-odds of each boundary signal.
                "boundary_signals": gaps[first - 1].reasons if first else None,
                "attachments": [
                    format_pages([p.page_number for p in pages[part.first : part.end]])
                    for part in parts[1:]
                ]
                if group_attachments
                else None,
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
    group_attachments: bool = False,
) -> Classification:
    """Segments of a multi-document file, stored and charged like one classification (credits
    per page, one ledger debit). Flushes only: the caller commits."""
    held = await hold_credits_for_pages(
        session, state, spec, account=account, document_id=document_id
    )
    pages, request_id = held.pages, held.request_id
    writer = SegmentWriter(session, state, held.document)
    try:
        images = {}
        if held.image_numbers:
            images = await page_images(state, held.document, held.image_numbers)
        results = await classify_each_page(state, spec, pages, images)
        plans, gaps = find_segments(pages, results)
        segment_results = await classify_segments(state, spec, pages, plans, images)
        segments = plan_segments(
            pages,
            labelled(plans, results, segment_results),
            gaps,
            group_attachments=group_attachments,
            review_threshold=state.settings.split_review_threshold,
        )
        # Every model call is accounted: the pages' and the segments' own classifications.
        calls = results + [r for r in segment_results if r is not None]
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
            prompt_tokens=sum(r.prompt_tokens for r in calls),
            image_tokens=sum(int(r.details.get("image_tokens", 0) or 0) for r in calls),
            image_pages=sorted(images) or None,
            completion_tokens=sum(r.completion_tokens for r in calls),
            cost_usd=_total_cost(calls),
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
