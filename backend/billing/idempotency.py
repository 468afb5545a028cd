"""`Idempotency-Key` for paid requests: a retry with the same key gets the first result, charged once.

The key is claimed in its own committed transaction before any work, so two concurrent requests
with one key cannot both run: the unique (account, key) row lets exactly one through. The stored
response is written in the same transaction as the result and its charge; if the work fails the
claim is dropped, so the client may retry.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.errors import Conflict, InvalidRequest
from backend.models import IdempotencyRecord

MAX_KEY_CHARS = 255


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def _find(session: AsyncSession, account_id: str, key: str) -> IdempotencyRecord | None:
    return (
        await session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
            )
        )
    ).first()


def _replay_or_conflict(record: IdempotencyRecord, endpoint: str, digest: str) -> dict[str, Any]:
    if record.endpoint != endpoint or record.request_hash != digest:
        raise InvalidRequest("This Idempotency-Key was already used for a different request.")
    if record.response is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.")
    return record.response


async def run(
    maker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    *,
    account_id: str,
    key: str | None,
    endpoint: str,
    payload: Any,
    work: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Do `work` once per key and commit `session`; replays return the stored response."""
    if key is None:
        body = await work()
        await session.commit()
        return body
    if not key.strip() or len(key) > MAX_KEY_CHARS:
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters.")
    digest = fingerprint(payload)
    async with maker() as claim:
        existing = await _find(claim, account_id, key)
        if existing is not None:
            return _replay_or_conflict(existing, endpoint, digest)
        claim.add(
            IdempotencyRecord(
                account_id=account_id, key=key, endpoint=endpoint, request_hash=digest
            )
        )
        try:
            await claim.commit()
        except IntegrityError:
            await claim.rollback()
            raced = await _find(claim, account_id, key)
            if raced is None:  # pragma: no cover - the winner failed and dropped its claim
                raise Conflict("Concurrent request with this Idempotency-Key; retry.") from None
            return _replay_or_conflict(raced, endpoint, digest)
    try:
        body = await work()
        record = await _find(session, account_id, key)
        if record is not None:
            record.response = body
            record.status_code = 200
            session.add(record)
        await session.commit()
        return body
    except BaseException:
        async with maker() as cleanup:
            await cleanup.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == account_id,  # type: ignore[arg-type]
                    IdempotencyRecord.key == key,  # type: ignore[arg-type]
                    IdempotencyRecord.response.is_(None),  # type: ignore[union-attr]
                )
            )
            await cleanup.commit()
        raise
