"""Accounts: creation with an opening grant and a first key."""

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts.keys import create_key
from backend.billing import ledger
from backend.models import Account


async def create_account(
    session: AsyncSession, *, name: str, credits: int, key_prefix: str, is_admin: bool = False
) -> tuple[Account, str]:
    """A new account holding `credits`, and its first API key (plain, shown once)."""
    account = Account(name=name)
    session.add(account)
    await session.flush()
    if credits:
        await ledger.grant(session, account_id=account.id, amount=credits, note="opening grant")
    _, plain = await create_key(session, account=account, prefix=key_prefix, is_admin=is_admin)
    return account, plain
