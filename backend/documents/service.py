"""Documents: take uploads (files and zips), store them, extract their pages' text.

The slow part (text layer and OCR) runs before the request writes anything: on SQLite the first
write takes the database's only write lock until the route commits, and OCR takes seconds a page.
Services flush; routes commit once.
"""

import asyncio
import hashlib
import logging
import os
import unicodedata
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial

from anyio import to_thread
from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import Settings
from backend.documents import ocr
from backend.documents.extraction import (
    Limits,
    OcrJob,
    PageText,
    count_pages,
    merge_ocr,
    read_text_layer,
)
from backend.documents.sniff import KINDS_BY_CONTENT_TYPE, ZIP, FileKind, sniff
from backend.documents.storage import FileStore
from backend.documents.zipfiles import ArchiveTooLarge, ZipMember, ZipReader
from backend.errors import ApiError, UnsupportedFile
from backend.models import Account, Document, Page, new_id, utcnow
from backend.state import AppState

log = logging.getLogger(__name__)

MAX_FILENAME_CHARS = 200
MAX_ERROR_CHARS = 1000
# Zip entries extracted at once: enough to keep every OCR worker busy with one-page scans.
ZIP_CONCURRENCY = 2
UNSUPPORTED = "Unsupported file: send a PDF, PNG, JPEG, TIFF, WebP, plain text, or a zip of these."


def display_name(raw: str | None) -> str:
    """The uploaded name, for display only: base name, no control or bidi characters, bounded."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Category C: control, format (bidi overrides that disguise extensions), surrogate, private.
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return "upload"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        keep_ext = dot and 0 < len(ext) <= 10
        name = f"{stem[: MAX_FILENAME_CHARS - len(ext) - 1]}.{ext}" if keep_ext else name
    return name[:MAX_FILENAME_CHARS]


def readable_error(message: str) -> str:
    """An error for the document row: no control characters (file names from a zip can carry
    NUL, which PostgreSQL refuses), bounded length."""
    cleaned = "".join(ch for ch in message if ch == "\n" or unicodedata.category(ch) != "Cc")
    return cleaned[:MAX_ERROR_CHARS]


def limits(settings: Settings) -> Limits:
    return Limits(max_pages=settings.max_pages, max_image_pixels=settings.max_image_pixels)


def store(state: AppState) -> FileStore:
    return FileStore(state.settings.storage_dir)


# --- extraction (no database) ------------------------------------------------------------------


async def extract_pages(
    data: bytes, kind: FileKind, settings: Settings, pool: Executor | None
) -> list[PageText]:
    """Every page's text: the text layer in a thread, then OCR of the pages with fewer than
    `min_text_chars` readable characters or a text layer of unmapped glyph codes, in parallel in
    `pool` (in this process, one at a time, if None).

    Without OCR (disabled, or Tesseract or its language data missing) such pages keep the little
    text they have and `ocr` stays false: the document is still processed.
    """
    tessdata = None
    if settings.ocr_enabled:
        tessdata = await to_thread.run_sync(ocr.tessdata_for, settings.ocr_language)
    layer = await to_thread.run_sync(
        partial(
            read_text_layer,
            data,
            kind,
            limits(settings),
            min_text_chars=settings.min_text_chars,
            ocr_dpi=settings.ocr_dpi if tessdata else None,
        )
    )
    if not layer.ocr_jobs:
        return layer.pages
    assert tessdata is not None
    # At most one job per worker queued at a time: a 500-page scan does not make every other
    # upload wait behind all of its pages, their jobs interleave.
    in_flight = asyncio.Semaphore(settings.ocr_workers or os.cpu_count() or 1)

    async def run(job: OcrJob) -> str | None:
        async with in_flight:
            return await _ocr_job(job, language=settings.ocr_language, tessdata=tessdata, pool=pool)

    texts = await asyncio.gather(*(run(job) for job in layer.ocr_jobs))
    return merge_ocr(layer, list(texts))


async def _ocr_job(
    job: OcrJob, *, language: str, tessdata: str, pool: Executor | None
) -> str | None:
    """One page's OCR text, or None when Tesseract failed on it (logged; the page keeps its
    text layer). A crashed worker pool is raised for the caller to replace."""
    args = (job.pdf, job.dpi, language, tessdata)
    try:
        if pool is None:
            return await to_thread.run_sync(ocr.ocr_page_inline, *args)
        return await asyncio.wrap_future(pool.submit(ocr.ocr_page, *args))
    except BrokenProcessPool:
        raise
    except Exception as error:
        log.warning("OCR failed on page %d: %s", job.page, error)
        return None


async def _extract(state: AppState, data: bytes, kind: FileKind) -> list[PageText]:
    """`extract_pages` with the app's pool; a pool broken by a crashed worker is replaced once."""
    for attempt in range(2):
        pool = state.executor
        try:
            return await extract_pages(data, kind, state.settings, pool)
        except BrokenProcessPool:
            if attempt or pool is None:
                raise
            log.error("an OCR worker died; starting a new worker pool")
            if state.executor is pool:  # another request may have replaced it already
                state.executor = ocr.make_pool(state.settings.ocr_workers)
                pool.shutdown(wait=False, cancel_futures=True)
    raise AssertionError("unreachable")


# --- uploads -----------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A document ready to be written: file stored (unless it failed), pages read if asked."""

    id: str
    name: str
    size: int
    sha256: str
    kind: FileKind | None = None
    storage_path: str = ""
    num_pages: int = 0
    pages: list[PageText] | None = None
    error: str | None = None


async def _prepare(
    state: AppState, account_id: str, name: str, data: bytes, *, extract: bool, strict: bool
) -> Prepared:
    """Validate, extract (if asked) and store one file. With `strict`, a refused file raises its
    4xx; otherwise (zip entries) it comes back as a failed document."""
    prepared = Prepared(new_id(), name, len(data), hashlib.sha256(data).hexdigest())
    kind = sniff(data) if data else None
    try:
        if not data:
            raise UnsupportedFile("The file is empty.")
        if kind is None or kind.kind == "zip":
            nested = " (zips inside a zip are not opened)" if kind else ""
            raise UnsupportedFile(UNSUPPORTED + nested)
        prepared.kind = kind
        if extract:
            prepared.pages = await _extract(state, data, kind)
            prepared.num_pages = len(prepared.pages)
        else:
            prepared.num_pages = await to_thread.run_sync(
                count_pages, data, kind, limits(state.settings)
            )
    except ApiError as error:
        if strict:
            raise
        prepared.error = error.message
        return prepared
    except Exception as error:  # PyMuPDF or OCR broke on a file that looked valid: keep it
        log.exception("extraction failed for document %s", prepared.id)
        prepared.error = f"Extraction failed: {error}"
    prepared.storage_path = await to_thread.run_sync(
        store(state).save, account_id, prepared.id, data
    )
    return prepared


async def ingest(
    session: AsyncSession,
    state: AppState,
    *,
    account: Account,
    filename: str | None,
    data: bytes,
    extract: bool,
) -> tuple[list[Document], bool]:
    """Store an upload as documents (one per entry for a zip), extracting their text if asked.
    Returns them and whether the upload was a zip."""
    if data and sniff(data) == ZIP:
        prepared = await _prepare_zip(state, account.id, data, extract=extract)
        is_zip = True
    else:
        name = display_name(filename)
        prepared = [await _prepare(state, account.id, name, data, extract=extract, strict=True)]
        is_zip = False
    try:
        return [await _write(session, account.id, p) for p in prepared], is_zip
    except BaseException:
        await _discard_files(state, prepared)
        raise


async def _prepare_zip(
    state: AppState, account_id: str, data: bytes, *, extract: bool
) -> list[Prepared]:
    settings = state.settings
    reader = await to_thread.run_sync(
        partial(
            ZipReader,
            data,
            max_entries=settings.max_zip_entries,
            max_total_bytes=int(settings.max_zip_uncompressed_mb * 2**20),
        )
    )
    slots = asyncio.Semaphore(ZIP_CONCURRENCY)

    async def entry(member: ZipMember) -> Prepared:
        async with slots:
            name = display_name(member.name)
            try:
                content = await to_thread.run_sync(
                    partial(reader.read, member, max_bytes=settings.max_upload_bytes)
                )
            except ArchiveTooLarge:
                raise
            except ApiError as error:
                return Prepared(new_id(), name, member.declared_size, "", error=error.message)
            return await _prepare(state, account_id, name, content, extract=extract, strict=False)

    tasks: list[asyncio.Task[Prepared]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks += [group.create_task(entry(member)) for member in reader.members]
    except* ArchiveTooLarge as refused:
        done = [t.result() for t in tasks if t.done() and not t.cancelled() and not t.exception()]
        await _discard_files(state, done)
        raise refused.exceptions[0] from None
    finally:
        reader.close()
    return [task.result() for task in tasks]


async def _write(session: AsyncSession, account_id: str, prepared: Prepared) -> Document:
    kind = prepared.kind
    if prepared.error:
        status = "failed"
    else:
        status = "uploaded" if prepared.pages is None else "processed"
    document = Document(
        id=prepared.id,
        account_id=account_id,
        filename=prepared.name,
        content_type=kind.content_type if kind else "application/octet-stream",
        kind=kind.kind if kind else "unknown",
        size_bytes=prepared.size,
        sha256=prepared.sha256,
        storage_path=prepared.storage_path,
        num_pages=prepared.num_pages,
        status=status,
        error=readable_error(prepared.error) if prepared.error else None,
        processed_at=utcnow() if status == "processed" else None,
    )
    session.add(document)
    await session.flush()
    if prepared.pages is not None and not prepared.error:
        _add_pages(session, document.id, prepared.pages)
        await session.flush()
    return document


def _add_pages(session: AsyncSession, document_id: str, pages: list[PageText]) -> None:
    for page in pages:
        text = page.text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        session.add(
            Page(
                document_id=document_id,
                page_number=page.page,
                text=text,
                chars=page.chars,
                ocr=page.ocr,
                width=page.width,
                height=page.height,
            )
        )


async def _discard_files(state: AppState, prepared: list[Prepared]) -> None:
    for item in prepared:
        if item.storage_path:
            await to_thread.run_sync(store(state).delete, item.storage_path)


# --- stored documents --------------------------------------------------------------------------


def kind_of(document: Document) -> FileKind:
    kind = KINDS_BY_CONTENT_TYPE.get(document.content_type)
    if kind is None or kind.kind == "zip" or not document.storage_path:
        reason = f": {document.error}" if document.error else "."
        raise UnsupportedFile(f"Document {document.id} has no readable file{reason}")
    return kind


async def read_file(state: AppState, document: Document) -> bytes:
    kind_of(document)  # refuses documents that never had a file (failed zip entries)
    try:
        return await to_thread.run_sync(store(state).read, document.storage_path)
    except FileNotFoundError:
        raise UnsupportedFile("The stored file of this document is missing.") from None


async def process(session: AsyncSession, state: AppState, document: Document) -> Document:
    """(Re-)extract every page's text (OCR where needed); the document ends processed or failed
    (with a readable error)."""
    data = await read_file(state, document)
    try:
        pages = await _extract(state, data, kind_of(document))
    except ApiError as error:
        document.status, document.error = "failed", readable_error(error.message)
    except Exception as error:
        log.exception("extraction failed for document %s", document.id)
        document.status, document.error = "failed", readable_error(f"Extraction failed: {error}")
    else:
        # Row lock (PostgreSQL): two extractions of one document write their pages in turn.
        await session.exec(select(Document.id).where(Document.id == document.id).with_for_update())
        await session.execute(delete(Page).where(Page.document_id == document.id))  # type: ignore[arg-type]
        _add_pages(session, document.id, pages)
        document.num_pages = len(pages)
        document.status, document.error = "processed", None
        document.processed_at = utcnow()
    session.add(document)
    await session.flush()
    return document


async def delete_document(session: AsyncSession, document: Document) -> bool:
    """Soft delete: the row (and its pages) stay for audit. Returns whether the stored file is
    no longer used by a live document (split segments share their parent's), so the route
    removes it with `discard_file` once the deletion is committed."""
    document.deleted_at = utcnow()
    session.add(document)
    await session.flush()
    if not document.storage_path:
        return False
    sharing = select(func.count()).where(
        Document.account_id == document.account_id,
        Document.storage_path == document.storage_path,
        Document.id != document.id,
        col(Document.deleted_at).is_(None),
    )
    return (await session.exec(sharing)).one() == 0


async def discard_file(state: AppState, document: Document) -> None:
    """Remove a deleted document's stored file."""
    if document.storage_path:
        await to_thread.run_sync(store(state).delete, document.storage_path)
