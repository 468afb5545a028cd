"""The audit history of classifications."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlmodel import col, select

from backend.api.pagination import PageDep, Paginated, paginate
from backend.classification.service import ClassifyResponse, classification_response
from backend.deps import CurrentAccount, SessionDep
from backend.errors import NotFound
from backend.models import Classification

router = APIRouter(tags=["classifications"])


class ClassificationRecord(ClassifyResponse):
    kind: str
    classification_schema: list[dict[str, str]]
    page_range: str | None
    result: dict | None = None


def record_out(c: Classification) -> ClassificationRecord:
    return ClassificationRecord(
        **classification_response(c).model_dump(),
        kind=c.kind,
        classification_schema=c.classification_schema,
        page_range=c.page_range,
        result=c.result,
    )


@router.get("/classifications/{request_id}")
async def get_classification(
    request_id: Annotated[str, Path(max_length=64)], account: CurrentAccount, session: SessionDep
) -> ClassificationRecord:
    """Return one stored classification by its request id."""
    record = await session.get(Classification, request_id)
    if record is None or record.account_id != account.id:
        raise NotFound(f"Classification {request_id} not found.")
    return record_out(record)


@router.get("/classifications")
async def list_classifications(
    account: CurrentAccount,
    session: SessionDep,
    page: PageDep,
    classifier_id: Annotated[str | None, Query(max_length=64)] = None,
    document_id: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Paginated[ClassificationRecord]:
    """List past classifications, newest first, filtered by classifier, document, label or date."""
    query = select(Classification).where(Classification.account_id == account.id)
    if classifier_id:
        query = query.where(Classification.classifier_id == classifier_id)
    if document_id:
        query = query.where(Classification.document_id == document_id)
    if label:
        query = query.where(Classification.classification == label)
    if kind:
        query = query.where(Classification.kind == kind)
    if since:
        query = query.where(Classification.created_at >= since)
    if until:
        query = query.where(Classification.created_at <= until)
    query = query.order_by(col(Classification.created_at).desc(), col(Classification.id))
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=[record_out(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )
