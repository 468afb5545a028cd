"""API keys: a recognisable prefix plus a random secret; only the SHA-256 of the key is stored.

A key has 256 bits of randomness, so a fast hash is enough (no salt or KDF needed: there is nothing
to brute-force), and lookups stay an indexed equality on the hash. The final comparison is
constant-time anyway, so timing never tells how much of a guess was right.
"""

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts.scopes import DEFAULT_SCOPES, validate_scopes
from backend.models import Account, ApiKey, utcnow

DISPLAY_CHARS = 12


def generate_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_key(
    session: AsyncSession,
    *,
    account: Account,
    prefix: str,
    name: str = "default",
    is_admin: bool = False,
    scopes: list[str] | None = None,
    classifier_ids: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Make a key for the account; the plain key is returned once and never stored.

    Without `scopes` it gets the default ones (every scope but `admin`, which admin keys add)."""
    if scopes is None:
        scopes = [*DEFAULT_SCOPES, *(["admin"] if is_admin else [])]
    plain = generate_key(prefix)
    key = ApiKey(
        account_id=account.id,
        name=name,
        display_prefix=plain[:DISPLAY_CHARS],
        key_hash=hash_key(plain),
        is_admin=is_admin,
        scopes=validate_scopes(scopes),
        classifier_ids=sorted(set(classifier_ids)) if classifier_ids is not None else None,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, plain


async def authenticate(session: AsyncSession, plain: str) -> tuple[ApiKey, Account] | None:
    """The live key and its account, or None for an unknown, revoked or expired key."""
    digest = hash_key(plain)
    row = (
        await session.exec(select(ApiKey, Account).join(Account).where(ApiKey.key_hash == digest))
    ).first()
    if row is None:
        return None
    key, account = row
    if not hmac.compare_digest(key.key_hash, digest) or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= utcnow():
        return None
    return key, account


async def revoke_key(session: AsyncSession, key: ApiKey, when: datetime | None = None) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = when or utcnow()
        session.add(key)
        await session.flush()
    # This process stops accepting it now; others within DOCSIFT_API_KEY_CACHE_SECONDS.
    from backend.accounts.keycache import forget_everywhere

    forget_everywhere(key.key_hash)
    return key
