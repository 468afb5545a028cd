"""The audit history of classifications."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import Field
from sqlmodel import col, select

from backend.api.pagination import PageDep, Paginated, paginate
from backend.classification.service import ClassifyResponse, classification_response
from backend.deps import CurrentAccount, RequireScope, SessionDep
from backend.errors import InvalidRequest, NotFound
from backend.models import Classification, Document

router = APIRouter(tags=["classifications"])

ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
IsoDateTime = Annotated[
    str | None, Query(pattern=ISO_PATTERN, description="ISO 8601, e.g. 2026-11-01T00:00:00Z")
]


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name} is not a valid ISO 8601 date-time.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ClassificationRecord(ClassifyResponse):
    kind: str
    classification_schema: list[dict[str, str]]
    page_range: str | None
    result: dict | None = None
    filename: str | None = Field(default=None, description="The document's file name")


def record_out(c: Classification, filename: str | None = None) -> ClassificationRecord:
    return ClassificationRecord(
        **classification_response(c).model_dump(),
        filename=filename,
        kind=c.kind,
        classification_schema=c.classification_schema,
        page_range=c.page_range,
        result=c.result,
    )


@router.get("/classifications/{request_id}", dependencies=[RequireScope("classify")])
async def get_classification(
    request_id: Annotated[str, Path(max_length=64)], account: CurrentAccount, session: SessionDep
) -> ClassificationRecord:
    """Return one stored classification by its request id."""
    record = await session.get(Classification, request_id)
    if record is None or record.account_id != account.id:
        raise NotFound(f"Classification {request_id} not found.")
    return record_out(record)


@router.get("/classifications", dependencies=[RequireScope("classify")])
async def list_classifications(
    account: CurrentAccount,
    session: SessionDep,
    page: PageDep,
    classifier_id: Annotated[str | None, Query(max_length=64)] = None,
    document_id: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    since: IsoDateTime = None,
    until: IsoDateTime = None,
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
        query = query.where(Classification.created_at >= _parse_time(since, "since"))
    if until:
        query = query.where(Classification.created_at <= _parse_time(until, "until"))
    query = query.order_by(col(Classification.created_at).desc(), col(Classification.id))
    rows, total = await paginate(session, query, page)
    ids = list({r.document_id for r in rows})
    names = dict(
        (
            await session.exec(
                select(Document.id, Document.filename).where(col(Document.id).in_(ids))
            )
        ).all()
    )
    return Paginated(
        items=[record_out(r, names.get(r.document_id)) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
