"""Documents: upload (files and zips), extraction, pages, previews, listing, deletion."""

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from backend.api.pagination import PageDep, Paginated, paginate
from backend.deps import CurrentAccount, RequireScope, SessionDep, StateDep
from backend.documents import erase, extraction, service
from backend.documents.queries import children_of, get_document, get_pages, not_converted_yet
from backend.errors import DocumentNotProcessed, NotFound, PayloadTooLarge
from backend.models import Document

DocumentId = Annotated[str, Path(max_length=64, description="The document's id")]
PageNumber = Annotated[int, Path(ge=1, le=100_000, description="1-based page number")]
READ_CHUNK = 1 << 20
# Room for the multipart framing around the file (boundaries, part headers, a filename).
MULTIPART_SLACK = 64 * 1024
MAX_PREVIEW_DPI = 200


def _too_large(limit: int) -> str:
    return f"The upload is larger than the {limit / 2**20:g} MB limit."


class UploadLimitRoute(APIRoute):
    """Counts the request body as it arrives and answers 413 once it passes the upload limit,
    before FastAPI has spooled the rest (Content-Length, when sent, is checked first)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            file_limit = request.app.state.docsift.settings.max_upload_bytes
            limit = file_limit + MULTIPART_SLACK
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(_too_large(file_limit))
            return await handler(Request(request.scope, _limited(request.receive, limit)))

        return limited


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            # An HTTPException, because FastAPI turns other errors raised while it parses the
            # form into a 400; the app's handler gives it the contract's payload_too_large body.
            raise HTTPException(413, _too_large(limit - MULTIPART_SLACK))
        return message

    return receive_limited


router = APIRouter(tags=["documents"])
upload_router = APIRouter(tags=["documents"], route_class=UploadLimitRoute)


class ChildOut(BaseModel):
    document_id: str
    filename: str
    kind: str
    status: str
    num_pages: int
    error: str | None = None


class DocumentOut(BaseModel):
    document_id: str
    filename: str
    num_pages: int
    status: str = Field(
        description="uploaded | processing (an Office file being converted on the queue) | "
        "processed | failed (`error` says why)"
    )
    error: str | None = None
    content_type: str
    kind: str = Field(description="pdf | image | text | office | email | html")
    size_bytes: int
    created_at: datetime
    processed_at: datetime | None = None
    parent_id: str | None = Field(
        default=None, description="The e-mail this attachment came from, or a split's source"
    )
    children: list[ChildOut] = Field(
        default_factory=list,
        description="Documents made from this one: an e-mail's attachments, a split's segments",
    )


class PageInfo(BaseModel):
    page: int
    chars: int
    ocr: bool
    ocr_pending: bool = Field(
        default=False, description="No text layer; OCR runs when a text request needs the page"
    )


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


def document_out(document: Document, children: list[Document] = ()) -> DocumentOut:  # type: ignore[assignment]
    return DocumentOut(
        document_id=document.id,
        filename=document.filename,
        num_pages=document.num_pages,
        status=document.status,
        error=document.error,
        content_type=document.content_type,
        kind=document.kind,
        size_bytes=document.size_bytes,
        created_at=document.created_at,
        processed_at=document.processed_at,
        parent_id=document.parent_document_id,
        children=[
            ChildOut(
                document_id=c.id,
                filename=c.filename,
                kind=c.kind,
                status=c.status,
                num_pages=c.num_pages,
                error=c.error,
            )
            for c in children
        ],
    )


async def documents_out(session: AsyncSession, documents: list[Document]) -> list[DocumentOut]:
    """Documents as the API shows them, each with its children (one query for all)."""
    children = await children_of(session, [d.id for d in documents])
    return [document_out(d, children.get(d.id, [])) for d in documents]


async def _detail(session: SessionDep, document: Document) -> DocumentDetail:
    pages = await get_pages(session, document_id=document.id)
    (out,) = await documents_out(session, [document])
    return DocumentDetail(
        **out.model_dump(),
        pages=[
            PageInfo(page=p.page_number, chars=p.chars, ocr=p.ocr, ocr_pending=p.ocr_pending)
            for p in pages
        ],
    )


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


@upload_router.post(
    "/documents",
    status_code=201,
    response_model=DocumentOut | DocumentsOut,
    responses={201: {"description": "One document, or `{documents: [...]}` for a zip"}},
    dependencies=[RequireScope("documents:write")],
)
async def upload_document(
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    file: Annotated[
        UploadFile,
        File(
            description="PDF, image (PNG, JPEG, TIFF, WebP, HEIC), text, HTML, Office file "
            "(DOCX, XLSX, PPTX, ODT, ODS, ODP, RTF, DOC, XLS, PPT), e-mail (EML, MSG), or a zip"
        ),
    ],
    extract: Annotated[bool, Query(description="Extract text (and OCR) at once")] = True,
    ocr: Annotated[
        Literal["now", "on_demand"],
        Query(
            description="on_demand: pages without a text layer are not OCR'd now (image-mode "
            "requests send their images); the first text request that needs them runs OCR"
        ),
    ] = "now",
) -> DocumentOut | DocumentsOut:
    """Upload a document or a zip of documents; extract their text at once by default.

    Office files answer with `status: "processing"`: they are converted on the task queue and
    become `processed` (or `failed`, with the reason) shortly after. An e-mail's attachments
    are documents of their own, listed in its `children`."""
    data = await _read_limited(file, state.settings.max_upload_bytes)
    try:
        made = await service.ingest(
            session,
            state,
            account=account,
            filename=file.filename,
            data=data,
            extract=extract,
            defer_ocr=ocr == "on_demand",
        )
        await state.queue.commit(session)
    except BaseException:
        state.queue.discard(session)
        raise
    out = await documents_out(session, made.documents)
    if made.is_zip:
        return DocumentsOut(documents=out)
    return out[0]


@router.get("/documents", dependencies=[RequireScope("documents:read")])
async def list_documents(
    account: CurrentAccount,
    session: SessionDep,
    page: PageDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Only filenames containing this text")
    ] = None,
    status: Annotated[
        Literal["uploaded", "processing", "processed", "failed"] | None,
        Query(description="Only documents with this status"),
    ] = None,
) -> Paginated[DocumentOut]:
    """List this account's documents, newest first; `q` searches filenames (any case)."""
    query = select(Document).where(
        Document.account_id == account.id, col(Document.deleted_at).is_(None)
    )
    if q and q.strip():
        # LIKE's wildcards in the search text are matched literally.
        pattern = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(Document.filename).ilike(f"%{pattern}%", escape="\\"))
    if status:
        query = query.where(Document.status == status)
    query = query.order_by(col(Document.created_at).desc(), col(Document.id).desc())
    rows, total = await paginate(session, query, page)
    return Paginated(
        items=await documents_out(session, list(rows)),
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/documents/{document_id}", dependencies=[RequireScope("documents:read")])
async def get_document_detail(
    document_id: DocumentId, account: CurrentAccount, session: SessionDep
) -> DocumentDetail:
    """Show a document's metadata and per-page text statistics."""
    document = await get_document(session, account_id=account.id, document_id=document_id)
    return await _detail(session, document)


@router.post("/documents/{document_id}/extract", dependencies=[RequireScope("documents:write")])
async def extract_document(
    document_id: DocumentId, account: CurrentAccount, session: SessionDep, state: StateDep
) -> DocumentDetail:
    """Extract (or re-extract) a document's text, with OCR where a page has none. An Office file
    not converted yet (never, or its conversion failed) is queued for conversion again and
    answered with `status: "processing"`."""
    document = await get_document(session, account_id=account.id, document_id=document_id)
    try:
        await service.process(session, state, document)
        await state.queue.commit(session)
    except BaseException:
        state.queue.discard(session)
        raise
    return await _detail(session, document)


async def _document_page(
    session: SessionDep, account: CurrentAccount, document_id: str, n: int
) -> Document:
    document = await get_document(session, account_id=account.id, document_id=document_id)
    if document.status == "processing":
        raise DocumentNotProcessed(not_converted_yet(document))
    if n > document.num_pages:
        raise NotFound(f"Page {n} does not exist; the document has {document.num_pages} pages.")
    return document


@router.get("/documents/{document_id}/pages/{n}", dependencies=[RequireScope("documents:read")])
async def get_page_text(
    document_id: DocumentId, n: PageNumber, account: CurrentAccount, session: SessionDep
) -> PageTextOut:
    """Return one page's extracted text."""
    document = await _document_page(session, account, document_id, n)
    pages = await get_pages(session, document_id=document.id, page_numbers=[n])
    if not pages and document.status == "processing":
        raise DocumentNotProcessed(not_converted_yet(document))
    if not pages:
        raise DocumentNotProcessed(
            f"Document {document.id} is '{document.status}': extract it with "
            "POST /v1/documents/{document_id}/extract first."
        )
    page = pages[0]
    return PageTextOut(
        document_id=document.id, page=n, text=page.text, chars=page.chars, ocr=page.ocr
    )


@router.get(
    "/documents/{document_id}/pages/{n}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "PNG preview of the page"}},
    dependencies=[RequireScope("documents:read")],
)
async def get_page_image(
    document_id: DocumentId,
    n: PageNumber,
    account: CurrentAccount,
    session: SessionDep,
    state: StateDep,
    dpi: Annotated[
        int, Query(ge=20, le=MAX_PREVIEW_DPI, description="Resolution of the preview")
    ] = 72,
) -> Response:
    """Render a PNG preview of one page."""
    document = await _document_page(session, account, document_id, n)
    data = await service.read_file(state, document)
    png = await to_thread.run_sync(
        extraction.render_page,
        data,
        service.kind_of(document),
        service.limits(state.settings),
        n,
        dpi,
    )
    return Response(png, media_type="image/png")


@router.delete("/documents/{document_id}", dependencies=[RequireScope("documents:write")])
async def delete_document(
    document_id: DocumentId, account: CurrentAccount, session: SessionDep, state: StateDep
) -> Deleted:
    """Delete a document and every byte derived from it: its file, renditions, page images, page
    text, the documents made from it (e-mail attachments, split segments) and examples copied from
    it. Past results keep their record (labels, scores, credits; no text)."""
    document = await get_document(session, account_id=account.id, document_id=document_id)
    erasure = await erase.erase_document(session, document, reason="deleted")
    await session.commit()
    await erase.remove_files(session, service.store(state), erasure)
    return Deleted(document_id=document.id, deleted=True)


router.include_router(upload_router)
