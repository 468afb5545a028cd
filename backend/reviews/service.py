"""The review queue: which results await a person, and recording what the person decided.

A result is marked when it is stored: `pending` if its top confidence is under the threshold of
the run (the classifier version's review policy, else the server default), `auto_accepted`
otherwise; a split marks each segment and is pending while any segment is. A decision never
changes the original result: it is kept beside it in `review` (label, outcome, key, time), and
on a saved classifier it becomes a labelled example (source "review"), which schedules a
background training (backend/reviews/training.py).
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.classification.schema import specs_from_json
from backend.classification.spec import RunSpec
from backend.classifiers.service import EXAMPLE_TEXT_CHARS
from backend.db import begin_write
from backend.documents.page_range import parse_page_range
from backend.documents.queries import get_pages
from backend.errors import Conflict, InvalidRequest, NotFound
from backend.evaluation.metrics import top_confidence
from backend.models import Account, Classification, Classifier, ClassifierVersion, Example, utcnow
from backend.state import AppState
from backend.webhooks import delivery as webhook_delivery

PENDING, AUTO_ACCEPTED, REVIEWED = "pending", "auto_accepted", "reviewed"
STATUSES = (PENDING, AUTO_ACCEPTED, REVIEWED)
REVIEW_REQUIRED = "classification.review_required"
REVIEWED_EVENT = "classification.reviewed"
REVIEWABLE_KINDS = ("classify", "classifier_run", "split")


def status_for(confidence: float, threshold: float) -> str:
    return PENDING if confidence < threshold else AUTO_ACCEPTED


def review_fields(
    kind: str,
    confidence_scores: dict[str, float] | None,
    result: dict[str, Any] | None,
    spec: RunSpec,
) -> dict[str, Any]:
    """A new result's review status and policy from the run's threshold (a split's segments one
    by one, marked in `result`); nothing when the run has no threshold."""
    threshold = spec.review_threshold
    if threshold is None or kind not in REVIEWABLE_KINDS:
        return {}
    segments = (result or {}).get("segments")
    if segments:
        for segment in segments:
            # A doubtful boundary (the split's own `review` flag) needs a person as much as a
            # doubtful label does.
            segment["review_status"] = (
                PENDING
                if segment.get("review")
                else status_for(top_confidence(segment["confidence_scores"]), threshold)
            )
        pending = any(s["review_status"] == PENDING for s in segments)
        status = PENDING if pending else AUTO_ACCEPTED
    else:
        status = status_for(top_confidence(confidence_scores or {}), threshold)
    return {"review_status": status, "review": {"threshold": threshold}}


def mark(record: Classification, spec: RunSpec) -> None:
    """Set a new result's review status from the run's threshold (see review_fields)."""
    fields = review_fields(record.kind, record.confidence_scores, record.result, spec)
    for name, value in fields.items():
        setattr(record, name, value)


class Decision(BaseModel):
    label: str
    outcome: str = Field(description="confirmed (the suggested label) or corrected")
    original: str = Field(description="The label the model suggested")
    reviewed_by: str | None = Field(description="Id of the API key that decided")
    reviewed_at: datetime
    example_id: str | None = Field(
        description="The labelled example it became (None without a saved classifier)"
    )
    segment: int | None = None


class SegmentView(BaseModel):
    index: int
    pages: str
    classification: str
    confidence: float
    confidence_scores: dict[str, float]
    review_status: str | None = None
    document_id: str | None = None
    decision: Decision | None = None


class ReviewItem(BaseModel):
    request_id: str
    document_id: str
    kind: str
    classifier_id: str | None
    classifier_version: int | None
    model: str
    classification: str = Field(description="The model's label (never changed by a review)")
    confidence: float = Field(description="Its score")
    confidence_scores: dict[str, float]
    labels: list[str] = Field(description="The labels a reviewer may choose from")
    review_status: str
    threshold: float | None
    label: str = Field(description="The reviewed label if decided, else the model's")
    decision: Decision | None = None
    segments: list[SegmentView] | None = None
    pages_used: list[int]
    created_at: datetime


def view(record: Classification) -> ReviewItem:
    review = record.review or {}
    scores = record.confidence_scores or {}
    decision = Decision(**review["decision"]) if review.get("decision") else None
    segments = None
    if record.kind == "split":
        decided = review.get("segments", {})
        segments = [
            SegmentView(
                index=i,
                pages=s["pages"],
                classification=s["classification"],
                confidence=top_confidence(s["confidence_scores"]),
                confidence_scores=s["confidence_scores"],
                review_status=s.get("review_status"),
                document_id=s.get("document_id"),
                decision=Decision(**decided[str(i)]) if str(i) in decided else None,
            )
            for i, s in enumerate((record.result or {}).get("segments", []))
        ]
    return ReviewItem(
        request_id=record.id,
        document_id=record.document_id,
        kind=record.kind,
        classifier_id=record.classifier_id,
        classifier_version=record.classifier_version,
        model=record.model,
        classification=record.classification or "",
        confidence=top_confidence(scores),
        confidence_scores=scores,
        labels=[s["label"] for s in record.classification_schema],
        review_status=record.review_status or "",
        threshold=review.get("threshold"),
        label=decision.label if decision else record.classification or "",
        decision=decision,
        segments=segments,
        pages_used=list(record.pages_used or []),
        created_at=record.created_at,
    )


async def announce(
    session: AsyncSession, state: AppState, account: Account, record: Classification
) -> None:
    """Record `classification.review_required` for a pending result (with the result's own
    transaction, like every event), when the account has a webhook URL."""
    if record.review_status != PENDING or not account.webhook_url:
        return
    await webhook_delivery.send(
        state,
        session,
        account_id=account.id,
        url=account.webhook_url,
        event_type=REVIEW_REQUIRED,
        event_key=f"{REVIEW_REQUIRED}:{record.id}",
        data=view(record).model_dump(mode="json"),
    )


def queue_query(
    account_id: str,
    *,
    status: str | None = PENDING,
    classifier_id: str | None = None,
    label: str | None = None,
    since: datetime | None = None,
) -> Any:
    """The account's reviewable results matching the filters, oldest first."""
    query = select(Classification).where(
        Classification.account_id == account_id, col(Classification.review_status).is_not(None)
    )
    if status is not None:
        query = query.where(Classification.review_status == status)
    if classifier_id is not None:
        query = query.where(Classification.classifier_id == classifier_id)
    if label is not None:
        query = query.where(Classification.classification == label)
    if since is not None:
        query = query.where(col(Classification.created_at) >= since)
    return query.order_by(col(Classification.created_at), col(Classification.id))


async def get_reviewable(
    session: AsyncSession, account_id: str, request_id: str, *, lock: bool = False
) -> Classification:
    query = select(Classification).where(
        Classification.id == request_id, Classification.account_id == account_id
    )
    if lock:
        query = query.with_for_update()
    record = (await session.exec(query.execution_options(populate_existing=True))).first()
    if record is None or record.review_status is None:
        raise NotFound(f"No reviewable result with request_id {request_id}.")
    return record


async def _example_text(session: AsyncSession, document_id: str, pages: list[int]) -> str:
    found = await get_pages(session, document_id=document_id, page_numbers=pages)
    return "\n\n".join(p.text for p in found)[:EXAMPLE_TEXT_CHARS]


async def _teach(
    session: AsyncSession, record: Classification, label: str, pages: list[int]
) -> Example | None:
    """The decision as a labelled example of the result's classifier, if it still exists and
    its latest version still has the label."""
    if record.classifier_id is None:
        return None
    classifier = await session.get(Classifier, record.classifier_id)
    if classifier is None or classifier.deleted_at is not None:
        return None
    version = (
        await session.exec(
            select(ClassifierVersion).where(
                ClassifierVersion.classifier_id == classifier.id,
                ClassifierVersion.version == classifier.latest_version,
            )
        )
    ).one()
    if label not in {s.label for s in specs_from_json(version.classification_schema)}:
        return None
    example = Example(
        account_id=record.account_id,
        classifier_id=classifier.id,
        document_id=record.document_id,
        label=label,
        text=await _example_text(session, record.document_id, pages),
        source="review",
        request_id=record.id,
    )
    session.add(example)
    return example


async def decide(
    session: AsyncSession,
    state: AppState,
    account: Account,
    *,
    request_id: str,
    label: str,
    reviewed_by: str | None,
    segment: int | None = None,
) -> tuple[ReviewItem, bool]:
    """Confirm or correct a result (flushes only: the caller commits). Idempotent: the same
    decision again changes nothing; a different label for a decided result is a 409. Returns
    the item and whether this call decided it (then an example may need training)."""
    await begin_write(session)  # read-decide-write as one turn (SQLite); row lock (PostgreSQL)
    record = await get_reviewable(session, account.id, request_id, lock=True)
    labels = [s["label"] for s in record.classification_schema]
    if label not in labels:
        raise InvalidRequest(f"Label '{label}' is not in the result's schema: {', '.join(labels)}.")
    review = dict(record.review or {})
    segments = (record.result or {}).get("segments") if record.kind == "split" else None
    if segments:
        if segment is None or not 0 <= segment < len(segments):
            raise InvalidRequest(
                f"This split has {len(segments)} segments: give `segment` (0-{len(segments) - 1})."
            )
        original = segments[segment]["classification"]
        decided = dict(review.get("segments", {}))
        previous = decided.get(str(segment))
        pages = parse_page_range(segments[segment]["pages"], 10**6)
    else:
        if segment is not None:
            raise InvalidRequest("`segment` is only for split results.")
        original = record.classification or ""
        previous = review.get("decision")
        pages = list(record.pages_used or [])
    if previous is not None:
        if previous["label"] != label:
            raise Conflict(f"Result {request_id} was already reviewed as '{previous['label']}'.")
        return view(record), False
    example = await _teach(session, record, label, pages)
    await session.flush()
    decision = Decision(
        label=label,
        outcome="confirmed" if label == original else "corrected",
        original=original,
        reviewed_by=reviewed_by,
        reviewed_at=utcnow(),
        example_id=example.id if example else None,
        segment=segment,
    ).model_dump(mode="json")
    if segments:
        decided[str(segment)] = decision
        review["segments"] = decided
        done = all(
            s.get("review_status") != PENDING or str(i) in decided for i, s in enumerate(segments)
        )
        record.review_status = REVIEWED if done else PENDING
    else:
        review["decision"] = decision
        record.review_status = REVIEWED
    record.review = review
    session.add(record)
    await session.flush()
    item = view(record)
    if account.webhook_url:
        await webhook_delivery.send(
            state,
            session,
            account_id=account.id,
            url=account.webhook_url,
            event_type=REVIEWED_EVENT,
            event_key=f"{REVIEWED_EVENT}:{record.id}:{segment if segment is not None else ''}",
            data=item.model_dump(mode="json"),
        )
    return item, example is not None
