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
from collections.abc import Iterator
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial

from anyio import to_thread
from sqlalchemy import delete
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.config import Settings
from backend.documents import mail, ocr, office
from backend.documents.extraction import (
    Limits,
    OcrJob,
    PageText,
    count_pages,
    merge_ocr,
    read_text_layer,
    text_pages,
)
from backend.documents.sniff import KINDS_BY_CONTENT_TYPE, TEXT, ZIP, FileKind, sniff
from backend.documents.storage import FileStore
from backend.documents.webtext import html_text
from backend.documents.zipfiles import ArchiveTooLarge, ZipMember, ZipReader
from backend.errors import ApiError, PayloadTooLarge, UnsupportedFile
from backend.models import Account, Document, Page, new_id, utcnow
from backend.state import AppState

log = logging.getLogger(__name__)

MAX_FILENAME_CHARS = 200
MAX_ERROR_CHARS = 1000
# Zip entries extracted at once: enough to keep every OCR worker busy with one-page scans.
ZIP_CONCURRENCY = 2
UNSUPPORTED = (
    "Unsupported file: send a PDF, an image (PNG, JPEG, TIFF, WebP, HEIC), plain text, HTML, an "
    "Office file (Word, Excel, PowerPoint, OpenDocument, RTF), an e-mail (.eml, .msg), or a zip "
    "of these."
)


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
    return FileStore(state.settings.storage_dir, state.cipher)


# --- extraction (no database) ------------------------------------------------------------------


async def extract_pages(
    data: bytes,
    kind: FileKind,
    settings: Settings,
    pool: Executor | None,
    *,
    defer_ocr: bool = False,
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
    if defer_ocr:  # image mode reads these pages as images; a text request OCRs them later
        for job in layer.ocr_jobs:
            layer.pages[job.page - 1].ocr_pending = True
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


async def extract_with_pool(
    state: AppState, data: bytes, kind: FileKind, *, defer_ocr: bool = False
) -> list[PageText]:
    """`extract_pages` with the app's pool; a pool broken by a crashed worker is replaced once."""
    for attempt in range(2):
        pool = state.executor
        try:
            return await extract_pages(data, kind, state.settings, pool, defer_ocr=defer_ocr)
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
    """A document ready to be written: file stored (unless it failed), pages read if asked, and
    for an e-mail its attachments as children."""

    id: str
    name: str
    size: int
    sha256: str
    kind: FileKind | None = None
    storage_path: str = ""
    rendition_path: str | None = None
    num_pages: int = 0
    pages: list[PageText] | None = None
    error: str | None = None
    converting: bool = False  # an Office file whose conversion job is enqueued on write
    children: list["Prepared"] = field(default_factory=list)

    def tree(self) -> Iterator["Prepared"]:
        yield self
        for child in self.children:
            yield from child.tree()


@dataclass
class _Budget:
    """Attachments an e-mail tree may still take (its nested e-mails included)."""

    left: int


@dataclass
class _Intake:
    state: AppState
    account_id: str
    extract: bool
    defer_ocr: bool = False


async def _prepare(
    intake: _Intake,
    name: str,
    data: bytes,
    *,
    strict: bool,
    depth: int = 0,
    budget: _Budget | None = None,
) -> Prepared:
    """Validate, extract (if asked) and store one file. With `strict`, a refused file raises its
    4xx; otherwise (zip entries, attachments) it comes back as a failed document. `depth` counts
    the e-mails around this file, `budget` the attachments its e-mail tree may still take."""
    state, settings = intake.state, intake.state.settings
    prepared = Prepared(new_id(), name, len(data), hashlib.sha256(data).hexdigest())
    kind = sniff(data) if data else None
    try:
        if not data:
            raise UnsupportedFile("The file is empty.")
        if kind is None or kind.kind == "zip":
            nested = " (zips inside a zip are not opened)" if kind else ""
            raise UnsupportedFile(UNSUPPORTED + nested)
        prepared.kind = kind
        if kind.kind == "office":
            await _check_office(state, data, kind)
            prepared.converting = intake.extract
        elif kind.kind in ("email", "html"):
            text = await _readable(intake, prepared, data, kind, depth=depth, budget=budget)
            pages = await to_thread.run_sync(text_pages, text, limits(settings))
            prepared.num_pages = len(pages)
            if intake.extract:
                prepared.pages = [PageText(i + 1, page) for i, page in enumerate(pages)]
            prepared.rendition_path = await to_thread.run_sync(
                store(state).save, intake.account_id, f"{prepared.id}.txt", text.encode()
            )
        elif intake.extract:
            prepared.pages = await extract_with_pool(state, data, kind, defer_ocr=intake.defer_ocr)
            prepared.num_pages = len(prepared.pages)
        else:
            prepared.num_pages = await to_thread.run_sync(count_pages, data, kind, limits(settings))
    except ApiError as error:
        if strict:
            await _discard_files(state, list(prepared.tree()))
            raise
        await _discard_files(state, [node for c in prepared.children for node in c.tree()])
        prepared.children, prepared.error = [], error.message
        prepared.rendition_path = None
        return prepared
    except Exception as error:  # PyMuPDF or OCR broke on a file that looked valid: keep it
        log.exception("extraction failed for document %s", prepared.id)
        prepared.error = f"Extraction failed: {error}"
    prepared.storage_path = await to_thread.run_sync(
        store(state).save, intake.account_id, prepared.id, data
    )
    return prepared


async def _check_office(state: AppState, data: bytes, kind: FileKind) -> None:
    """Refuse before storing what LibreOffice must not see or cannot convert here."""
    settings = state.settings
    await to_thread.run_sync(
        partial(
            office.check,
            data,
            kind,
            max_entries=settings.max_office_parts,
            max_total_bytes=int(settings.max_zip_uncompressed_mb * 2**20),
        )
    )
    if office.soffice_binary(settings.libreoffice_path) is None:
        raise UnsupportedFile(
            f"This server cannot convert {kind.format} files: LibreOffice is not installed."
        )


async def _readable(
    intake: _Intake,
    prepared: Prepared,
    data: bytes,
    kind: FileKind,
    *,
    depth: int,
    budget: _Budget | None,
) -> str:
    """An HTML page's or e-mail's readable text; an e-mail's attachments become its children."""
    settings = intake.state.settings
    if kind.kind == "html":
        return await to_thread.run_sync(html_text, data)
    if depth > settings.max_email_depth:
        raise UnsupportedFile(
            f"The e-mail is nested {depth} e-mails deep; the limit is {settings.max_email_depth}."
        )
    parsed = await to_thread.run_sync(
        partial(
            mail.parse,
            data,
            kind.format,
            min_inline_image_bytes=settings.email_min_inline_image_bytes,
        )
    )
    budget = budget or _Budget(settings.max_email_attachments)
    budget.left -= len(parsed.attachments)
    if budget.left < 0:
        raise PayloadTooLarge(
            f"The e-mail holds more than {settings.max_email_attachments} attachments "
            "(nested e-mails included)."
        )
    prepared.children = await _prepare_attachments(
        intake, parsed.attachments, depth=depth + 1, budget=budget
    )
    return parsed.text()


async def _prepare_attachments(
    intake: _Intake, attachments: list[mail.Attachment], *, depth: int, budget: _Budget
) -> list[Prepared]:
    """Each attachment as a document of its own format; a zip's files each become one."""
    slots = asyncio.Semaphore(ZIP_CONCURRENCY)

    async def one(attachment: mail.Attachment) -> list[Prepared]:
        name = display_name(attachment.filename)
        if attachment.data and sniff(attachment.data) == ZIP:
            try:
                entries = await _prepare_zip(
                    intake, attachment.data, depth=depth, budget=budget, prefix=f"{name}/"
                )
            except ApiError as error:  # the archive as a whole was refused: say so, keep the rest
                digest = hashlib.sha256(attachment.data).hexdigest()
                return [Prepared(new_id(), name, len(attachment.data), digest, error=error.message)]
            return entries
        async with slots:
            return [
                await _prepare(
                    intake, name, attachment.data, strict=False, depth=depth, budget=budget
                )
            ]

    tasks: list[asyncio.Task[list[Prepared]]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks += [group.create_task(one(a)) for a in attachments]
    except BaseException:
        done = [t.result() for t in tasks if t.done() and not t.cancelled() and not t.exception()]
        await _discard_files(intake.state, [p for made in done for p in made])
        raise
    return [prepared for task in tasks for prepared in task.result()]


@dataclass
class Ingested:
    documents: list[Document]  # what the upload made at top level (a zip's files)
    everything: list[Document]  # the same with every e-mail's attachments, parents first
    is_zip: bool


async def ingest(
    session: AsyncSession,
    state: AppState,
    *,
    account: Account,
    filename: str | None,
    data: bytes,
    extract: bool,
    defer_ocr: bool = False,
) -> Ingested:
    """Store an upload as documents (one per entry for a zip, children for an e-mail's
    attachments), extracting their text if asked; Office files get a conversion job, enqueued
    in `session`'s transaction (commit with `state.queue.commit`)."""
    intake = _Intake(state, account.id, extract, defer_ocr)
    if data and sniff(data) == ZIP:
        prepared = await _prepare_zip(intake, data)
        is_zip = True
    else:
        name = display_name(filename)
        prepared = [await _prepare(intake, name, data, strict=True)]
        is_zip = False
    written: list[Document] = []
    try:
        top = [await _write(session, account.id, p, None, written) for p in prepared]
        converting = [{"document_id": d.id} for d in written if d.status == "processing"]
        if converting:
            from backend.documents.conversion import CONVERT_TASK

            await state.queue.enqueue(session, CONVERT_TASK, converting)
    except BaseException:
        await _discard_files(state, [node for p in prepared for node in p.tree()])
        raise
    return Ingested(top, written, is_zip)


async def _prepare_zip(
    intake: _Intake,
    data: bytes,
    *,
    depth: int = 0,
    budget: _Budget | None = None,
    prefix: str = "",
) -> list[Prepared]:
    """Every file of a zip as a document. Inside an e-mail (`budget` given) each file counts as
    an attachment."""
    settings = intake.state.settings
    reader = await to_thread.run_sync(
        partial(
            ZipReader,
            data,
            max_entries=settings.max_zip_entries,
            max_total_bytes=int(settings.max_zip_uncompressed_mb * 2**20),
        )
    )
    if budget is not None:
        budget.left -= len(reader.members) - 1  # the zip itself was counted already
        if budget.left < 0:
            reader.close()
            raise PayloadTooLarge(
                f"The e-mail holds more than {settings.max_email_attachments} attachments "
                "(the files of its zips and nested e-mails included)."
            )
    slots = asyncio.Semaphore(ZIP_CONCURRENCY)

    async def entry(member: ZipMember) -> Prepared:
        async with slots:
            name = prefix + display_name(member.name)
            try:
                content = await to_thread.run_sync(
                    partial(reader.read, member, max_bytes=settings.max_upload_bytes)
                )
            except ArchiveTooLarge:
                raise
            except ApiError as error:
                return Prepared(new_id(), name, member.declared_size, "", error=error.message)
            return await _prepare(intake, name, content, strict=False, depth=depth, budget=budget)

    tasks: list[asyncio.Task[Prepared]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks += [group.create_task(entry(member)) for member in reader.members]
    except* ArchiveTooLarge as refused:
        done = [t.result() for t in tasks if t.done() and not t.cancelled() and not t.exception()]
        await _discard_files(intake.state, [node for p in done for node in p.tree()])
        raise refused.exceptions[0] from None
    finally:
        reader.close()
    return [task.result() for task in tasks]


async def _write(
    session: AsyncSession,
    account_id: str,
    prepared: Prepared,
    parent_id: str | None,
    written: list[Document],
) -> Document:
    kind = prepared.kind
    if prepared.error:
        status = "failed"
    elif prepared.converting:
        status = "processing"
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
        rendition_path=prepared.rendition_path,
        rendition_type=TEXT.content_type if prepared.rendition_path else None,
        num_pages=prepared.num_pages,
        status=status,
        error=readable_error(prepared.error) if prepared.error else None,
        processed_at=utcnow() if status == "processed" else None,
        parent_document_id=parent_id,
    )
    session.add(document)
    await session.flush()
    written.append(document)
    if prepared.pages is not None and not prepared.error:
        _add_pages(session, document.id, prepared.pages)
        await session.flush()
    for child in prepared.children:
        await _write(session, account_id, child, document.id, written)
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
                ocr_pending=page.ocr_pending,
                width=page.width,
                height=page.height,
            )
        )


async def _discard_files(state: AppState, prepared: list[Prepared]) -> None:
    for item in prepared:
        for path in (item.storage_path, item.rendition_path):
            if path:
                await to_thread.run_sync(store(state).delete, path)


# --- stored documents --------------------------------------------------------------------------


def kind_of(document: Document) -> FileKind:
    """The kind of file the document's pages are read and rendered from: its rendition when it
    has one (an Office file's PDF, an e-mail's text), else the upload itself."""
    if document.rendition_path and document.rendition_type in KINDS_BY_CONTENT_TYPE:
        return KINDS_BY_CONTENT_TYPE[document.rendition_type]
    kind = KINDS_BY_CONTENT_TYPE.get(document.content_type)
    if kind is not None and kind.kind == "office":
        raise UnsupportedFile(
            f"Document {document.id} has not been converted yet ({document.status})."
        )
    if kind is None or kind.kind == "zip" or not document.storage_path:
        reason = f": {document.error}" if document.error else "."
        raise UnsupportedFile(f"Document {document.id} has no readable file{reason}")
    return kind


async def read_file(state: AppState, document: Document) -> bytes:
    """The bytes `kind_of` describes (the rendition when there is one)."""
    kind_of(document)  # refuses documents that never had a file (failed zip entries)
    try:
        return await to_thread.run_sync(
            store(state).read, document.rendition_path or document.storage_path
        )
    except FileNotFoundError:
        raise UnsupportedFile("The stored file of this document is missing.") from None


async def process(session: AsyncSession, state: AppState, document: Document) -> Document:
    """(Re-)extract every page's text (OCR where needed); the document ends processed or failed
    (with a readable error). An Office file not converted yet gets a conversion job instead
    (the caller commits with `state.queue.commit`) and is `processing` until it has run."""
    if document.kind == "office" and not document.rendition_path:
        from backend.documents.conversion import CONVERT_TASK

        if document.status != "processing":
            document.status, document.error = "processing", None
            session.add(document)
            await session.flush()
            await state.queue.enqueue(session, CONVERT_TASK, [{"document_id": document.id}])
        return document
    data = await read_file(state, document)
    try:
        pages = await extract_with_pool(state, data, kind_of(document))
    except ApiError as error:
        document.status, document.error = "failed", readable_error(error.message)
    except Exception as error:
        log.exception("extraction failed for document %s", document.id)
        document.status, document.error = "failed", readable_error(f"Extraction failed: {error}")
    else:
        await replace_pages(session, document, pages)
    session.add(document)
    await session.flush()
    return document


async def replace_pages(session: AsyncSession, document: Document, pages: list[PageText]) -> None:
    """Store a document's pages in place of any it had, and mark it processed."""
    # Row lock (PostgreSQL): two extractions of one document write their pages in turn.
    await session.exec(select(Document.id).where(Document.id == document.id).with_for_update())
    await session.execute(delete(Page).where(Page.document_id == document.id))  # type: ignore[arg-type]
    _add_pages(session, document.id, pages)
    document.num_pages = len(pages)
    document.status, document.error = "processed", None
    document.processed_at = utcnow()
