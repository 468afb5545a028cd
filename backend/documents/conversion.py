"""The queue job that turns an uploaded Office file into pages: LibreOffice renders it to a PDF
(backend/documents/office.py), which is kept as the document's rendition, and the PDF's pages are
read as any PDF's (text layer, OCR where a page has none).

The upload answered at once with `status: "processing"`; this job moves the document to
`processed` or to `failed` with the reason. It may run twice (a worker taken for dead): the final
write is conditional on the document still being `processing`, so the second run to finish
changes nothing and removes the rendition it made.
"""

import logging
from functools import partial

from anyio import to_thread
from sqlalchemy import update
from sqlmodel import col, select

from backend.documents import office, service
from backend.documents.extraction import PageText
from backend.documents.sniff import KINDS_BY_CONTENT_TYPE, PDF
from backend.errors import ApiError
from backend.models import Document, utcnow
from backend.queue import task
from backend.state import AppState

log = logging.getLogger(__name__)
CONVERT_TASK = "docsift.documents.convert"


# Retried after an unexpected error (the database, while storing the outcome): from the start.
@task(CONVERT_TASK, retries=2, retry_wait=5)
async def convert_document(state: AppState, document_id: str) -> None:
    async with state.sessionmaker() as session:
        document = await session.get(Document, document_id)
        if document is None or document.status != "processing" or document.deleted_at:
            return
    settings = state.settings
    rendition = None
    pages: list[PageText] = []
    error = None
    try:
        kind = KINDS_BY_CONTENT_TYPE[document.content_type]
        binary = office.soffice_binary(settings.libreoffice_path)
        if binary is None:
            raise office.ConversionFailed("LibreOffice is not installed on the worker.")
        data = await to_thread.run_sync(service.store(state).read, document.storage_path)
        converted = await to_thread.run_sync(
            partial(
                office.convert,
                data,
                kind,
                timeout=settings.conversion_timeout_seconds,
                binary=binary,
            )
        )
        log.info(
            "converted document %s (%s) in %.1f s, LibreOffice peak %.0f MB",
            document.id,
            kind.format,
            converted.seconds,
            converted.peak_rss_mb,
        )
        pages = await service.extract_with_pool(state, converted.pdf, PDF)
        rendition = await to_thread.run_sync(
            service.store(state).save, document.account_id, f"{document.id}.pdf", converted.pdf
        )
    except ApiError as refused:
        error = refused.message
    except FileNotFoundError:
        error = "The stored file of this document is missing."
    except Exception as crashed:
        log.exception("conversion failed for document %s", document.id)
        error = f"Conversion failed: {crashed}"
    if not await _finish(state, document, rendition, pages, error) and rendition:
        await to_thread.run_sync(service.store(state).delete, rendition)


async def _finish(
    state: AppState,
    document: Document,
    rendition: str | None,
    pages: list[PageText],
    error: str | None,
) -> bool:
    """Store the outcome if the document is still waiting for it; False if another run (or a
    deletion) got there first."""
    async with state.sessionmaker() as session:
        values = (
            {"status": "failed", "error": service.readable_error(error)}
            if error
            else {
                "status": "processed",
                "error": None,
                "rendition_path": rendition,
                "rendition_type": PDF.content_type,
                "num_pages": len(pages),
                "processed_at": utcnow(),
            }
        )
        moved = await session.execute(
            update(Document)
            .where(
                col(Document.id) == document.id,
                col(Document.status) == "processing",
                col(Document.deleted_at).is_(None),
            )
            .values(**values)
        )
        if moved.rowcount != 1:
            await session.rollback()
            return False
        if not error:
            fresh = await session.get(Document, document.id, populate_existing=True)
            assert fresh is not None
            await service.replace_pages(session, fresh, pages)
            session.add(fresh)
        await session.commit()
        return True


async def resume(state: AppState) -> int:
    """Defer the conversions a dead process left unfinished (the in-memory broker lost them)."""
    async with state.sessionmaker() as session:
        waiting = (
            await session.exec(
                select(Document.id).where(
                    Document.status == "processing", col(Document.deleted_at).is_(None)
                )
            )
        ).all()
    await state.queue.defer(CONVERT_TASK, [{"document_id": i} for i in waiting])
    return len(waiting)
