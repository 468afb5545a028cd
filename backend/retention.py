"""Retention: documents older than their retention period are erased by a periodic queue job.

A document's period is the account's `retention_days`, unless a classifier that ran on it has
its own `retention_days`: then that one (the shortest, when several did). None keeps documents
for ever. Erasure is the same as `DELETE /v1/documents/{id}` (backend/documents/erase.py): the
ledger and the classification history stay, each erasure leaves a `PurgeRecord`.
"""

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import col, select

from backend.documents import erase
from backend.documents.service import store
from backend.models import Account, Classification, Classifier, Document, utcnow

if TYPE_CHECKING:
    from backend.state import AppState

log = logging.getLogger(__name__)


async def _classifier_days(session, document_id: str) -> int | None:  # noqa: ANN001
    """The shortest retention of the classifiers that ran on the document (None: none set)."""
    query = (
        select(func.min(Classifier.retention_days))
        .join(Classification, col(Classification.classifier_id) == col(Classifier.id))
        .where(
            Classification.document_id == document_id,
            col(Classifier.retention_days).is_not(None),
        )
    )
    return (await session.exec(query)).one()


async def purge_expired(state: "AppState") -> int:
    """Erase every document past its retention; returns how many (with their children)."""
    now = utcnow()
    erased = 0
    async with state.sessionmaker() as session:
        accounts = (await session.exec(select(Account.id, Account.retention_days))).all()
    for account_id, account_days in accounts:
        async with state.sessionmaker() as session:
            overrides = (
                await session.exec(
                    select(func.min(Classifier.retention_days)).where(
                        Classifier.account_id == account_id,
                        col(Classifier.retention_days).is_not(None),
                    )
                )
            ).one()
            shortest = (
                min(d for d in (account_days, overrides) if d is not None)
                if (account_days is not None or overrides is not None)
                else None
            )
            if shortest is None:
                continue
            candidates = (
                await session.exec(
                    select(Document.id)
                    .where(
                        Document.account_id == account_id,
                        col(Document.deleted_at).is_(None),
                        col(Document.created_at) < now - timedelta(days=shortest),
                    )
                    .order_by(col(Document.created_at))
                )
            ).all()
        for document_id in candidates:
            async with state.sessionmaker() as session:
                document = await session.get(Document, document_id)
                if document is None or document.deleted_at is not None:
                    continue  # erased with its parent in this run
                days = await _classifier_days(session, document.id)
                days = days if days is not None else account_days
                if days is None or document.created_at >= now - timedelta(days=days):
                    continue
                erasure = await erase.erase_document(session, document, reason="retention")
                await session.commit()
                await erase.remove_files(session, store(state), erasure)
                erased += 1
    if erased:
        log.info("retention purge", extra={"documents": erased})
    return erased
