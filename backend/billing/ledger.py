"""Credits: an append-only ledger of integer rows, with holds for classifications in flight.

The life of a paid request:
1. `reserve` (own short transaction, committed at once): hold the credits if `balance - reserved`
   covers them. One conditional UPDATE, atomic on SQLite (single writer) and PostgreSQL (the row
   is re-checked after a concurrent update), so parallel requests can never overdraw.
2. The model runs. No write lock is held meanwhile.
3. `charge` (in the request's own transaction, beside the stored result): the debit row, the
   balance and the release of the hold are written together, or not at all.
   Or `release` (own transaction) when the classification failed: it costs nothing.
"""

from datetime import timedelta

from sqlalchemy import delete, func, insert, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import begin_write
from backend.errors import InsufficientCredits
from backend.models import Account, CreditReservation, LedgerEntry, utcnow


async def _free_hold(session: AsyncSession, request_id: str) -> tuple[str, int] | None:
    """Delete a request's hold: (account id, amount), or None if it had none. The caller gives
    the amount back to `available` (lowers `reserved`).

    The DELETE decides, not an earlier read: two runs of one request (a retried batch item, a
    sweep) may both have seen the hold, and only the one whose DELETE removed it may lower
    `reserved`, else the hold is freed twice.
    """
    freed = (
        await session.execute(
            delete(CreditReservation)
            .where(CreditReservation.request_id == request_id)  # type: ignore[arg-type]
            .returning(CreditReservation.account_id, CreditReservation.amount)
        )
    ).first()
    return None if freed is None else (freed.account_id, freed.amount)


async def _unreserve(session: AsyncSession, request_id: str) -> bool:
    """Free a request's hold without charging; False if it had none."""
    freed = await _free_hold(session, request_id)
    if freed is None:
        return False
    account_id, amount = freed
    await session.execute(
        update(Account).where(Account.id == account_id).values(reserved=Account.reserved - amount)
    )
    return True


async def _append(
    session: AsyncSession,
    *,
    account_id: str,
    amount: int,
    kind: str,
    release: int = 0,
    **columns: object,
) -> LedgerEntry:
    """Append a ledger row and move the account's balance by its amount, lowering `reserved` by
    `release` (the hold the row settles) in the same UPDATE: the account row is the hot row, every
    request of the account updates it, so it is touched once, after the row is written."""
    entry = (
        await session.scalars(
            insert(LedgerEntry)
            .values(account_id=account_id, amount=amount, kind=kind, created_at=utcnow(), **columns)
            .returning(LedgerEntry)
        )
    ).one()
    await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(balance=Account.balance + amount, reserved=Account.reserved - release)
    )
    return entry


async def grant(
    session: AsyncSession, *, account_id: str, amount: int, note: str | None = None
) -> LedgerEntry:
    """Add credits (an operator's grant or a purchase)."""
    if amount <= 0:
        raise ValueError("a grant must be positive")
    return await _append(session, account_id=account_id, amount=amount, kind="grant", note=note)


async def reserve(
    maker: async_sessionmaker[AsyncSession], *, account_id: str, request_id: str, amount: int
) -> None:
    """Hold `amount` credits for a request, or raise InsufficientCredits. Commits by itself."""
    async with maker() as session:
        await begin_write(session)
        # The hold row first, the account row last: on PostgreSQL the account row stays locked
        # from its UPDATE to the commit, and every request of the account needs it.
        # Core statements on this path: an ORM object and its flush cost more than the SQL.
        await session.execute(
            insert(CreditReservation).values(
                request_id=request_id, account_id=account_id, amount=amount, created_at=utcnow()
            )
        )
        result = await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.balance - Account.reserved >= amount)
            .values(reserved=Account.reserved + amount)
        )
        if result.rowcount != 1:
            await session.rollback()
            account = await session.get(Account, account_id)
            available = (account.balance - account.reserved) if account else 0
            raise InsufficientCredits(
                f"This request needs {amount} credits; the account has {available} available."
            )
        await session.commit()


async def release(maker: async_sessionmaker[AsyncSession], *, request_id: str) -> None:
    """Drop a request's hold without charging (the request failed). Commits by itself."""
    async with maker() as session:
        await begin_write(session)
        await _unreserve(session, request_id)
        await session.commit()


async def charge(
    session: AsyncSession,
    *,
    account_id: str,
    request_id: str,
    amount: int,
    model: str | None = None,
    pages: int | None = None,
    note: str | None = None,
) -> None:
    """Debit a completed request, consuming its hold. Only flushes: the caller commits."""
    await begin_write(session)
    freed = await _free_hold(session, request_id)
    if freed is None and amount > 0:
        # The hold was swept (the request outlived the sweep window): debit only if still covered.
        result = await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.balance - Account.reserved >= amount)
            .values(reserved=Account.reserved)
        )
        if result.rowcount != 1:
            raise InsufficientCredits("The account can no longer cover this request.")
    await _append(
        session,
        account_id=account_id,
        amount=-amount,
        kind="debit",
        release=freed[1] if freed else 0,
        request_id=request_id,
        model=model,
        pages=pages,
        note=note,
    )


def stale_after(model_total_timeout_seconds: float) -> timedelta:
    """Age past which a hold has outlived any request that could have taken it (ten times the
    longest a model call may take, retries included)."""
    return timedelta(seconds=model_total_timeout_seconds * 10)


async def release_stale(maker: async_sessionmaker[AsyncSession], *, older_than: timedelta) -> int:
    """Free holds left by a crashed process (or a request that never gave its back). Returns
    how many were released. Run at start-up and by the periodic recover task; a request that
    outlives its hold is still charged while the balance covers it (`charge`)."""
    cutoff = utcnow() - older_than
    async with maker() as session:
        stale = (
            await session.exec(
                select(CreditReservation.request_id).where(CreditReservation.created_at < cutoff)
            )
        ).all()
        await begin_write(session)
        freed = [await _unreserve(session, request_id) for request_id in stale]
        await session.commit()
        return sum(freed)


async def ledger_sum(session: AsyncSession, account_id: str) -> int:
    total = (
        await session.exec(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.account_id == account_id
            )
        )
    ).one()
    return int(total)
