"""The ledger under concurrency: holds never overdraw, charges happen once, balance = ledger sum."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from backend.accounts.service import create_account
from backend.billing import ledger
from backend.db import create_engine, create_sessionmaker
from backend.errors import InsufficientCredits
from backend.migrate import upgrade
from backend.models import Account


@pytest.fixture
async def maker(both_databases):
    engine = create_engine(both_databases)
    await upgrade(engine)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _account(maker, credits: int) -> str:
    async with maker() as session:
        account, _ = await create_account(session, name="t", credits=credits, key_prefix="dsk_")
        await session.commit()
        return account.id


async def _paid_request(maker, account_id: str, amount: int) -> bool:
    """What a classify request does: hold, 'call the model', then charge beside the result."""
    request_id = str(uuid.uuid4())
    try:
        await ledger.reserve(maker, account_id=account_id, request_id=request_id, amount=amount)
    except InsufficientCredits:
        return False
    await asyncio.sleep(0.01)  # the model call: other requests interleave here
    async with maker() as session:
        await ledger.charge(session, account_id=account_id, request_id=request_id, amount=amount)
        await session.commit()
    return True


async def _state(maker, account_id: str) -> tuple[int, int, int]:
    async with maker() as session:
        account = await session.get(Account, account_id)
        return account.balance, account.reserved, await ledger.ledger_sum(session, account_id)


async def test_thirty_concurrent_requests_on_ten_credits(maker):
    account_id = await _account(maker, 10)
    results = await asyncio.gather(*[_paid_request(maker, account_id, 1) for _ in range(30)])
    assert results.count(True) == 10 and results.count(False) == 20
    assert await _state(maker, account_id) == (0, 0, 0)


async def test_a_failed_request_releases_its_hold_and_costs_nothing(maker):
    account_id = await _account(maker, 5)
    await ledger.reserve(maker, account_id=account_id, request_id="r1", amount=3)
    assert await _state(maker, account_id) == (5, 3, 5)
    with pytest.raises(InsufficientCredits):
        await ledger.reserve(maker, account_id=account_id, request_id="r2", amount=3)
    await ledger.release(maker, request_id="r1")
    assert await _state(maker, account_id) == (5, 0, 5)


async def test_one_request_cannot_be_charged_twice(maker):
    account_id = await _account(maker, 5)
    await ledger.reserve(maker, account_id=account_id, request_id="r1", amount=2)
    async with maker() as session:
        await ledger.charge(session, account_id=account_id, request_id="r1", amount=2)
        await session.commit()
    with pytest.raises(IntegrityError):
        async with maker() as session:
            await ledger.charge(session, account_id=account_id, request_id="r1", amount=2)
            await session.commit()
    assert await _state(maker, account_id) == (3, 0, 3)


async def test_stale_holds_from_a_dead_process_are_released(maker):
    account_id = await _account(maker, 4)
    await ledger.reserve(maker, account_id=account_id, request_id="r1", amount=4)
    assert await ledger.release_stale(maker, older_than=timedelta(hours=1)) == 0
    assert await ledger.release_stale(maker, older_than=timedelta(seconds=-1)) == 1
    assert await _state(maker, account_id) == (4, 0, 4)


async def test_a_hold_freed_by_several_runs_at_once_is_freed_once(maker):
    # A retried batch item, the run it superseded and the stale-hold sweep may all try to free
    # one request's hold together: `reserved` must drop by the hold once, never below zero.
    account_id = await _account(maker, 5)
    await ledger.reserve(maker, account_id=account_id, request_id="r1", amount=2)
    freers = [ledger.release(maker, request_id="r1") for _ in range(8)]
    freers += [ledger.release_stale(maker, older_than=timedelta(seconds=-1)) for _ in range(4)]
    outcomes = await asyncio.gather(*freers)
    assert sum(o for o in outcomes if o is not None) <= 1  # the sweep counts only what it freed
    assert await _state(maker, account_id) == (5, 0, 5)


async def test_a_charge_racing_a_release_frees_the_hold_once(maker):
    account_id = await _account(maker, 5)
    await ledger.reserve(maker, account_id=account_id, request_id="r1", amount=2)

    async def charge() -> None:
        async with maker() as session:
            await ledger.charge(session, account_id=account_id, request_id="r1", amount=2)
            await session.commit()

    await asyncio.gather(charge(), *[ledger.release(maker, request_id="r1") for _ in range(6)])
    balance, reserved, ledger_total = await _state(maker, account_id)
    # Whichever won, the hold is gone exactly once; a charge that lost the hold still debits,
    # since the account covers it.
    assert (balance, reserved, ledger_total) == (3, 0, 3)
