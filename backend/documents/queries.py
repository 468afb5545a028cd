"""Reading documents and pages, always scoped to the account that owns them."""

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.errors import DocumentNotProcessed, NotFound
from backend.models import Document, Page


async def get_document(session: AsyncSession, *, account_id: str, document_id: str) -> Document:
    """The account's live document, or not_found (also for another account's id)."""
    document = await session.get(Document, document_id)
    if document is None or document.account_id != account_id or document.deleted_at is not None:
        raise NotFound(f"Document {document_id} not found.")
    return document


async def get_processed_document(
    session: AsyncSession, *, account_id: str, document_id: str
) -> Document:
    document = await get_document(session, account_id=account_id, document_id=document_id)
    return ensure_processed(document)


def ensure_processed(document: Any) -> Any:
    """The document if it can be classified, else why not (400). Takes any object with the
    document's columns (the classify fast path passes a Core row)."""
    if document.status == "processing":
        raise DocumentNotProcessed(not_converted_yet(document))
    if document.status != "processed":
        raise DocumentNotProcessed(
            f"Document {document.id} is '{document.status}'"
            + (f" ({document.error})" if document.error else "")
            + ": process it with POST /v1/documents/{id}/extract first."
        )
    return document


def not_converted_yet(document: Document) -> str:
    return (
        f"Document {document.id} is still being converted (status 'processing'): use it once "
        "GET /v1/documents/{id} shows 'processed'."
    )


async def children_of(session: AsyncSession, parent_ids: list[str]) -> dict[str, list[Document]]:
    """Live documents made from each parent (an e-mail's attachments, a split's segments), in
    the order they were made."""
    found: dict[str, list[Document]] = {}
    for start in range(0, len(parent_ids), 1000):  # bounded IN lists
        rows = await session.exec(
            select(Document)
            .where(
                col(Document.parent_document_id).in_(parent_ids[start : start + 1000]),
                col(Document.deleted_at).is_(None),
            )
            .order_by(col(Document.created_at), col(Document.id))
        )
        for child in rows.all():
            found.setdefault(child.parent_document_id or "", []).append(child)
    return found


async def get_pages(
    session: AsyncSession, *, document_id: str, page_numbers: list[int] | None = None
) -> list[Page]:
    """Pages of a document in order (all, or the given 1-based numbers)."""
    query = select(Page).where(Page.document_id == document_id)
    if page_numbers is not None:
        query = query.where(col(Page.page_number).in_(page_numbers))
    return list((await session.exec(query.order_by(col(Page.page_number)))).all())


async def document_text(session: AsyncSession, *, document_id: str, max_chars: int = 20_000) -> str:
    """The document's text, pages joined, cut at max_chars (examples, similarity)."""
    pages = await get_pages(session, document_id=document_id)
    return "\n\n".join(p.text for p in pages)[:max_chars]
