"""Documents: upload (files and zips), extraction, pages, previews, listing, deletion."""

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile
from pydantic import BaseModel
from sqlmodel import col, select

from backend.api.pagination import PageDep, Paginated, paginate
from backend.deps import CurrentAccount, SessionDep, StateDep
from backend.documents import extraction, service
from backend.documents.queries import get_document, get_pages
from backend.errors import InvalidRequest, NotFound, PayloadTooLarge
from backend.models import Document

router = APIRouter(tags=["documents"])

DocumentId = Annotated[str, Path(max_length=64, description="The document's id")]
READ_CHUNK = 1 << 20


class DocumentOut(BaseModel):
    document_id: str
    filename: str
    num_pages: int
    status: str
    error: str | None = None
    content_type: str
    size_bytes: int
    created_at: datetime
    processed_at: datetime | None = None


class PageInfo(BaseModel):
    page: int
    chars: int
    ocr: bool


class DocumentDetail(DocumentOut):
    pages: list[PageInfo]


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


class PageTextOut(BaseModel):
    document_id: str
    page: int
    text: str
    chars: int
    ocr: bool


class Deleted(BaseModel):
    document_id: str
    deleted: bool


def document_out(document: Document) -> DocumentOut:
    return DocumentOut(
        document_id=document.id,
        filename=document.filename,
        num_pages=document.num_pages,
        status=document.status,
        error=document.error,
        content_type=document.content_type,
        size_bytes=document.size_bytes,
        created_at=document.created_at,
        processed_at=document.processed_at,
    )


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The file is larger than the {limit // 2**20} MB upload limit.")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/documents",
    status_code=201,
    response_model=DocumentOut | DocumentsOut,
    responses={201: {"description": "One document, or `{documents: [...]}` for a zip"}},
)
async def upload_document(
    request: Request,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description="PDF, PNG, JPEG, TIFF, WebP, text, or a zip")],
    extract: Annotated[bool, Query(description="Extract text (and OCR) at once")] = True,
) -> DocumentOut | DocumentsOut:
    """Upload a document or a zip of documents; extract their text at once by default."""
    limit = state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 1_000_000:
        raise PayloadTooLarge(f"The upload is larger than the {limit // 2**20} MB limit.")
    data = await _read_limited(file, limit)
    documents, is_zip = await service.ingest(
        session, state, account=account, filename=file.filename, data=data, extract=extract
    )
    await session.commit()
    if is_zip:
        return DocumentsOut(documents=[document_out(d) for d in documents])
    return document_out(documents[0])


@router.get("/documents")
async def list_documents(
    account: CurrentAccount, session: SessionDep, page: PageDep
) -> Paginated[DocumentOut]:
    """List this account's documents, newest first."""
    query = (
        select(Document)
        .where(Document.account_id == account.id, col(Document.deleted_at).is_(None))
        .order_by(col(Document.created_at).desc(), col(Document.id))
    )
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=[document_out(d) for d in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/documents/{document_id}")
async def get_document_detail(
    document_id: DocumentId, account: CurrentAccount, session: SessionDep
) -> DocumentDetail:
    """Show a document's metadata and per-page text statistics."""
    document = await get_document(session, account_id=account.id, document_id=document_id)
    pages = await get_pages(session, document_id=document.id)
    return DocumentDetail(
        **document_out(document).model_dump(),
        pages=[PageInfo(page=p.page_number, chars=p.chars, ocr=p.ocr) for p in pages],
    )


@router.post("/documents/{document_id}/extract")
async def extract_document(
    document_id: DocumentId, account: CurrentAccount, session: SessionDep, state: StateDep
) -> DocumentDetail:
    """Extract (or re-extract) a document's text, with OCR where a page has none."""
    document = await get_document(session, account_id=account.id, document_id=document_id)
    await service.process(session, state, document)
    await session.commit()
    return await get_document_detail(document_id, account, session)


async def _page(session: SessionDep, account: CurrentAccount, document_id: str, n: int):  # noqa: ANN202
    document = await get_document(session, account_id=account.id, document_id=document_id)
    if not 1 <= n <= max(document.num_pages, 0):
        raise NotFound(f"Page {n} does not exist; the document has {document.num_pages} pages.")
    return document


@router.get("/documents/{document_id}/pages/{n}")
async def get_page_text(
    document_id: DocumentId,
    n: Annotated[int, Path(ge=1, le=100_000)],
    account: CurrentAccount,
    session: SessionDep,
) -> PageTextOut:
    """Return one page's extracted text."""
    document = await _page(session, account, document_id, n)
    pages = await get_pages(session, document_id=document.id, page_numbers=[n])
    if not pages:
        raise InvalidRequest("The document has not been processed yet: POST .../extract first.")
    page = pages[0]
    return PageTextOut(
        document_id=document.id, page=n, text=page.text, chars=page.chars, ocr=page.ocr
    )


@router.get(
    "/documents/{document_id}/pages/{n}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "PNG preview of the page"}},
)
async def get_page_image(
    document_id: DocumentId,
    n: Annotated[int, Path(ge=1, le=100_000)],
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    dpi: Annotated[int, Query(ge=20, le=200, description="Resolution of the preview")] = 72,
) -> Response:
    """Render a PNG preview of one page."""
    document = await _page(session, account, document_id, n)
    data = await service.read_file(state, document)
    png = await asyncio.to_thread(
        extraction.render_page, data, service.kind_of(document), service.limits(state), n, dpi
    )
    return Response(png, media_type="image/png")


@router.delete("/documents/{document_id}")
async def delete_document(
    document_id: DocumentId, account: CurrentAccount, session: SessionDep, state: StateDep
) -> Deleted:
    """Delete a document (its file is removed; past results keep their record)."""
    document = await get_document(session, account_id=account.id, document_id=document_id)
    await service.delete_document(session, state, document)
    await session.commit()
    return Deleted(document_id=document.id, deleted=True)
