"""Erasing a document: its file and every byte derived from it, in the database and on disk.

Used by `DELETE /v1/documents/{id}` and the retention job (backend/retention.py). What goes:
the uploaded file, renditions, page images, page text, the documents made from it (e-mail
attachments, split segments, recursively), examples copied from it (they hold its text), and
`local` models trained on those examples (their vocabulary holds its words). What stays, for the
ledger and the audit history: the document row as a tombstone (id, kind, size, dates; no name,
no hash), classifications (labels, scores, versions, credits), evaluation and batch items, and a
`PurgeRecord` saying how much was erased and why.
"""

import logging
from dataclasses import dataclass, field

from anyio import to_thread
from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.documents.storage import FileStore
from backend.models import Document, Example, Page, PurgeRecord, TrainedModel, utcnow

log = logging.getLogger(__name__)


@dataclass
class Erasure:
    """What one erasure removed from the database; files go after the commit (`remove_files`)."""

    account_id: str
    document_ids: list[str] = field(default_factory=list)
    shared_paths: list[str] = field(default_factory=list)  # files no live document uses any more
    record: PurgeRecord | None = None


async def _tree(session: AsyncSession, root: Document) -> list[Document]:
    """The document and every document made from it (children of children too)."""
    found = [root]
    frontier = [root.id]
    while frontier:
        children = (
            await session.exec(
                select(Document).where(
                    Document.account_id == root.account_id,
                    col(Document.parent_document_id).in_(frontier),
                )
            )
        ).all()
        children = [c for c in children if c.id not in {d.id for d in found}]
        found += children
        frontier = [c.id for c in children]
    return found


async def erase_document(session: AsyncSession, root: Document, *, reason: str) -> Erasure:
    """Erase `root` and its descendants in this session (the caller commits, then calls
    `remove_files`). Idempotent: erasing an erased document erases nothing more."""
    documents = await _tree(session, root)
    ids = [d.id for d in documents]
    erasure = Erasure(account_id=root.account_id, document_ids=ids)
    # Files another live document still reads (a split segment's source stays while the source
    # lives): kept. Paths named by the erased ids themselves are removed in any case.
    for path in {p for d in documents for p in (d.storage_path, d.rendition_path) if p}:
        sharing = select(func.count()).where(
            Document.account_id == root.account_id,
            (col(Document.storage_path) == path) | (col(Document.rendition_path) == path),
            col(Document.id).not_in(ids),
            col(Document.deleted_at).is_(None),
        )
        if (await session.exec(sharing)).one() == 0:
            erasure.shared_paths.append(path)

    pages = (await session.exec(select(func.count()).where(col(Page.document_id).in_(ids)))).one()
    await session.execute(delete(Page).where(col(Page.document_id).in_(ids)))
    examples = (await session.exec(select(Example).where(col(Example.document_id).in_(ids)))).all()
    classifier_ids = {e.classifier_id for e in examples}
    for example in examples:
        await session.delete(example)
    if classifier_ids:
        await session.execute(
            delete(TrainedModel).where(col(TrainedModel.classifier_id).in_(classifier_ids))
        )
    now = utcnow()
    for document in documents:
        document.filename = ""
        document.sha256 = ""
        document.storage_path = ""
        document.rendition_path = None
        document.error = None
        document.deleted_at = document.deleted_at or now
        session.add(document)
    erasure.record = PurgeRecord(
        account_id=root.account_id,
        document_id=root.id,
        reason=reason,
        pages=int(pages),
        children=len(documents) - 1,
        examples=len(examples),
    )
    session.add(erasure.record)
    await session.flush()
    return erasure


async def remove_files(session: AsyncSession, store: FileStore, erasure: Erasure) -> None:
    """Remove the erased documents' files (after the erasure is committed: a rolled-back erasure
    must not lose them) and note their count and size on the purge record."""

    def work() -> tuple[int, int]:
        files = size = 0
        for path in erasure.shared_paths:
            try:
                size += store.size(path)
                store.delete(path)
                files += 1
            except FileNotFoundError:
                pass
        for document_id in erasure.document_ids:
            n, b = store.purge_document(erasure.account_id, document_id)
            files, size = files + n, size + b
        return files, size

    files, size = await to_thread.run_sync(work)
    if erasure.record is not None and (files or size):
        erasure.record.files, erasure.record.bytes = files, size
        session.add(erasure.record)
        await session.commit()
    log.info(
        "document erased",
        extra={"document_id": erasure.document_ids[0], "files": files, "bytes": size},
    )
