"""Human review: the queue of low-confidence results, and a person's decisions."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import select

from backend.api.classifications import IsoDateTime, _parse_time
from backend.api.pagination import PageDep, Paginated, paginate
from backend.deps import CurrentAccount, CurrentKey, RequireScope, SessionDep, StateDep
from backend.models import Classification
from backend.reviews import service, training
from backend.reviews.service import ReviewItem

router = APIRouter(tags=["reviews"])
RequestId = Annotated[str, Path(max_length=64)]


class ReviewIn(BaseModel):
    label: str = Field(
        min_length=1, max_length=200, description="The right label: the suggested one confirms it"
    )
    segment: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        description="Split results: which segment (0-based) is decided",
    )


class ReviewQueue(Paginated[ReviewItem]):
    pending: int = Field(description="All results of the account awaiting review")


@router.get("/reviews", dependencies=[RequireScope("reviews")])
async def list_reviews(
    account: CurrentAccount,
    session: SessionDep,
    page: PageDep,
    status: Annotated[
        Literal["pending", "auto_accepted", "reviewed", "all"], Query(description="Default pending")
    ] = "pending",
    classifier_id: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[str | None, Query(max_length=200, description="The model's label")] = None,
    since: IsoDateTime = None,
) -> ReviewQueue:
    """Results by review status, oldest first (default: those awaiting a person)."""
    query = service.queue_query(
        account.id,
        status=None if status == "all" else status,
        classifier_id=classifier_id,
        label=label,
        since=_parse_time(since, "since") if since else None,
    )
    rows, total = await paginate(session, query, page)
    pending = (
        await session.exec(
            select(func.count()).where(
                Classification.account_id == account.id,
                Classification.review_status == service.PENDING,
            )
        )
    ).one()
    return ReviewQueue(
        items=[service.view(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
        pending=int(pending),
    )


@router.get("/reviews/{request_id}", dependencies=[RequireScope("reviews")])
async def get_review(
    request_id: RequestId, account: CurrentAccount, session: SessionDep
) -> ReviewItem:
    """One reviewable result with its decision, if any."""
    return service.view(await service.get_reviewable(session, account.id, request_id))


@router.post("/reviews/{request_id}", dependencies=[RequireScope("reviews")])
async def review(
    request_id: RequestId,
    body: ReviewIn,
    account: CurrentAccount,
    key: CurrentKey,
    session: SessionDep,
    state: StateDep,
) -> ReviewItem:
    """Confirm or correct a result. The original stays as it was, the decision (label, key,
    time) beside it; on a saved classifier it becomes a labelled example and the classifier
    retrains in the background. The same decision again is a no-op; a different one, 409."""
    item, taught = await service.decide(
        session,
        state,
        account,
        request_id=request_id,
        label=body.label,
        segment=body.segment,
        reviewed_by=key.id,
    )
    await state.queue.commit(session)
    if taught and item.classifier_id:
        await training.schedule(state, item.classifier_id)
    return item
