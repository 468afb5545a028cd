"""Which pages of a run go as images, and the OCR a text request still owes (ocr=on_demand).

`input_mode`: text sends every page's text; image every page's image; text+image both; auto the
image of each page without a text layer when the model takes images (its text otherwise).
"""

import asyncio
import logging
import os
from dataclasses import replace

from anyio import to_thread
from sqlalchemy.orm import object_session
from sqlmodel import col, select

from backend.classification.spec import ExampleDoc, RunSpec
from backend.documents import ocr
from backend.documents.extraction import count_chars, needs_ocr, read_text_layer, readable_chars
from backend.documents.page_images import page_images
from backend.errors import ApiError
from backend.models import Document, Page
from backend.state import AppState

log = logging.getLogger(__name__)


def image_pages(spec: RunSpec, pages: list[Page], min_text_chars: int) -> list[int]:
    """Page numbers the run sends as images."""
    mode = spec.modes.input_mode
    if mode in ("image", "text+image"):
        return [p.page_number for p in pages]
    if mode == "auto" and spec.info.supports_vision:
        return [
            p.page_number
            for p in pages
            if p.ocr or p.ocr_pending or needs_ocr(p.text, min_text_chars)
        ]
    return []


async def with_example_images(state: AppState, spec: RunSpec, account_id: str) -> RunSpec:
    """In image mode, the spec with each example's first page as an image (rendered once and
    cached like any page); an example whose document has no file left keeps its text only."""
    if spec.modes.input_mode != "image" or not spec.examples or spec.info.trainable:
        return spec
    ids = list({e.document_id for e in spec.examples})
    async with state.sessionmaker() as session:
        documents = (
            await session.exec(
                select(Document).where(
                    col(Document.id).in_(ids),
                    Document.account_id == account_id,
                    col(Document.deleted_at).is_(None),
                )
            )
        ).all()
    images: dict[str, bytes] = {}
    for document in documents:
        try:
            images[document.id] = (await page_images(state, document, [1]))[1]
        except ApiError as error:
            log.info("example %s sent as text: %s", document.id, error.message)
    examples = [
        ExampleDoc(e.document_id, replace(e.example, image=images.get(e.document_id)))
        for e in spec.examples
    ]
    return replace(spec, examples=examples)


def text_pages(spec: RunSpec, pages: list[Page], images: list[int]) -> list[Page]:
    """The pages whose text the run sends."""
    if spec.modes.input_mode == "text+image":
        return pages
    return [p for p in pages if p.page_number not in images]


async def run_pending_ocr(state: AppState, document: Document, pages: list[Page]) -> None:
    """OCR the `pages` still waiting for it, store their text (own transaction, so it is kept
    whatever happens to the request) and update the rows in hand."""
    pending = [p for p in pages if p.ocr_pending]
    if not pending:
        return
    for page in pending:  # updated here and in a session of its own, not the caller's
        if (owner := object_session(page)) is not None:
            owner.expunge(page)
    from backend.documents.service import _ocr_job, kind_of, limits, read_file

    settings = state.settings
    tessdata = None
    if settings.ocr_enabled:
        tessdata = await to_thread.run_sync(ocr.tessdata_for, settings.ocr_language)
    texts: dict[int, str | None] = {}
    if tessdata is not None:
        data = await read_file(state, document)
        layer = await to_thread.run_sync(
            lambda: read_text_layer(
                data,
                kind_of(document),
                limits(settings),
                min_text_chars=settings.min_text_chars,
                ocr_dpi=settings.ocr_dpi,
            )
        )
        wanted = {p.page_number for p in pending}
        jobs = [job for job in layer.ocr_jobs if job.page in wanted]
        slots = asyncio.Semaphore(settings.ocr_workers or os.cpu_count() or 1)

        async def one(job):  # noqa: ANN001, ANN202 - an OcrJob
            async with slots:
                return job.page, await _ocr_job(
                    job, language=settings.ocr_language, tessdata=tessdata, pool=state.executor
                )

        texts = dict(await asyncio.gather(*(one(job) for job in jobs)))
    async with state.sessionmaker() as session:
        rows = await session.exec(
            select(Page).where(
                Page.document_id == document.id,
                col(Page.page_number).in_([p.page_number for p in pending]),
            )
        )
        by_number = {row.page_number: row for row in rows.all()}
        for page in pending:
            text = texts.get(page.page_number)
            row = by_number.get(page.page_number)
            for target in (page, row):
                if target is None:
                    continue
                target.ocr_pending = False
                # Without Tesseract the page keeps its little text, as at upload.
                if text is not None:
                    target.ocr = True
                    if readable_chars(text) >= readable_chars(target.text):
                        target.text = text.replace("\x00", "")
                        target.chars = count_chars(target.text)
            if row is not None:
                session.add(row)
        await session.commit()
    log.info("OCR on demand: %d page(s) of document %s", len(pending), document.id)
