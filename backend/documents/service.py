"""Documents: take uploads (files and zips), store them, extract their pages' text."""

import asyncio
import hashlib
import re
import unicodedata
from functools import partial

from sqlalchemy import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.documents import extraction
from backend.documents.sniff import FileKind, sniff
from backend.documents.storage import FileStore
from backend.documents.zipfiles import iter_zip
from backend.errors import ApiError, UnsupportedFile
from backend.models import Account, Document, Page, new_id, utcnow
from backend.state import AppState

MAX_FILENAME_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def display_name(raw: str | None) -> str:
    """The uploaded name for display only: base name, no control characters, bounded length."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", unicodedata.normalize("NFC", name)).strip()
    return (name or "upload")[:MAX_FILENAME_CHARS]


def limits(state: AppState) -> extraction.Limits:
    s = state.settings
    return extraction.Limits(max_pages=s.max_pages, max_image_pixels=s.max_image_pixels)


def store(state: AppState) -> FileStore:
    return FileStore(state.settings.storage_dir)


async def ingest(
    session: AsyncSession,
    state: AppState,
    *,
    account: Account,
    filename: str | None,
    data: bytes,
    extract: bool,
) -> tuple[list[Document], bool]:
    """Store an upload as documents (several for a zip). Returns them and whether it was a zip."""
    if not data:
        raise UnsupportedFile("The file is empty.")
    kind = sniff(data)
    if kind is None:
        raise UnsupportedFile(
            "Unsupported file: send a PDF, PNG, JPEG, TIFF, WebP, plain text, or a zip of these."
        )
    if kind.kind != "zip":
        document = await _create(
            session, state, account, display_name(filename), data, kind, strict=True
        )
        if extract:
            await process(session, state, document)
        return [document], False
    settings = state.settings
    entries = await asyncio.to_thread(
        lambda: list(
            iter_zip(
                data,
                max_entries=settings.max_zip_entries,
                max_total_bytes=int(settings.max_zip_uncompressed_mb * 2**20),
            )
        )
    )
    documents = []
    for entry in entries:
        entry_kind = sniff(entry.data)
        if entry_kind is None or entry_kind.kind == "zip":
            documents.append(
                await _failed(
                    session,
                    account,
                    entry.name,
                    entry.data,
                    "Unsupported file in the zip (nested zips are not followed).",
                )
            )
            continue
        try:
            document = await _create(
                session, state, account, entry.name, entry.data, entry_kind, strict=True
            )
        except ApiError as error:
            documents.append(await _failed(session, account, entry.name, entry.data, error.message))
            continue
        if extract:
            await process(session, state, document)
        documents.append(document)
    return documents, True


async def _create(
    session: AsyncSession,
    state: AppState,
    account: Account,
    name: str,
    data: bytes,
    kind: FileKind,
    *,
    strict: bool,
) -> Document:
    # Opening the file validates it (corrupt, encrypted, page and pixel limits) before it is kept.
    num_pages = await asyncio.to_thread(extraction.count_pages, data, kind, limits(state))
    document_id = new_id()
    path = await asyncio.to_thread(store(state).save, account.id, document_id, data)
    document = Document(
        id=document_id,
        account_id=account.id,
        filename=name,
        content_type=kind.content_type,
        kind=kind.kind,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_path=path,
        num_pages=num_pages,
    )
    session.add(document)
    await session.flush()
    return document


async def _failed(
    session: AsyncSession, account: Account, name: str, data: bytes, error: str
) -> Document:
    """A zip entry that could not be taken, kept as a failed document so nothing is lost silently."""
    document = Document(
        account_id=account.id,
        filename=name,
        content_type="application/octet-stream",
        kind="unknown",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_path="",
        status="failed",
        error=error,
    )
    session.add(document)
    await session.flush()
    return document


def kind_of(document: Document) -> FileKind:
    found = {
        "application/pdf": "pdf",
        "image/png": "png",
        "image/jpeg": "jpeg",
        "image/tiff": "tiff",
        "image/webp": "webp",
        "text/plain": "txt",
    }.get(document.content_type)
    return FileKind(document.kind, document.content_type, found)


async def read_file(state: AppState, document: Document) -> bytes:
    if not document.storage_path:
        raise UnsupportedFile("This document has no stored file.")
    try:
        return await asyncio.to_thread(store(state).read, document.storage_path)
    except FileNotFoundError:
        raise UnsupportedFile("The stored file of this document is missing.") from None


async def process(session: AsyncSession, state: AppState, document: Document) -> Document:
    """Extract every page's text (OCR where needed) and mark the document processed or failed."""
    settings = state.settings
    try:
        data = await read_file(state, document)
        run = partial(
            extraction.extract,
            data,
            kind_of(document),
            limits(state),
            min_text_chars=settings.min_text_chars,
            ocr=settings.ocr_enabled,
            ocr_dpi=settings.ocr_dpi,
            ocr_language=settings.ocr_language,
            pool=state.executor,
        )
        pages = await asyncio.to_thread(run)
    except ApiError as error:
        document.status, document.error = "failed", error.message
    except Exception as error:  # OCR engine or PyMuPDF failures must not lose the upload
        document.status, document.error = "failed", f"Extraction failed: {error}"
    else:
        await session.execute(delete(Page).where(Page.document_id == document.id))  # type: ignore[arg-type]
        for page in pages:
            text = page.text.replace("\x00", "")
            session.add(
                Page(
                    document_id=document.id,
                    page_number=page.page,
                    text=text,
                    chars=len(text.strip()),
                    ocr=page.ocr,
                    width=page.width,
                    height=page.height,
                )
            )
        document.num_pages = len(pages)
        document.status, document.error = "processed", None
        document.processed_at = utcnow()
    session.add(document)
    await session.flush()
    return document


async def delete_document(session: AsyncSession, state: AppState, document: Document) -> None:
    """Soft delete: the row stays for audit (results point at it), the file goes."""
    document.deleted_at = utcnow()
    session.add(document)
    await session.flush()
    if document.storage_path:
        await asyncio.to_thread(store(state).delete, document.storage_path)
