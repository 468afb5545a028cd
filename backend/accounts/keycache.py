"""API-key lookups cached per process, and `last_used_at` written in the background.

Every request authenticates; without a cache that is a database round trip (a join of the key and
its account) before any work. The cache maps the key's SHA-256 to what authentication decides
(the key's id, its account, admin or not) for `DOCSIFT_API_KEY_CACHE_SECONDS` (default 5 s; 0
turns it off). Only live keys are cached: an unknown or revoked key is looked up every time.

Revocation: `revoke_key` forgets the key in every cache of its own process at once; another API
process (a second uvicorn worker, another machine) keeps accepting it until its entry expires,
at most the TTL after the revocation. That bound is the price of the cache, and why the TTL is
short.

`last_used_at` is the last time a key authenticated, to the precision of one flush: requests only
note the time in memory, and `KeyUsage` writes the newest time per key every
`DOCSIFT_API_KEY_LAST_USED_FLUSH_SECONDS` (default 10 s) in one statement, and once more when the
process stops.
"""

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.accounts.keys import authenticate, hash_key
from backend.db import begin_write
from backend.models import ApiKey, utcnow

log = logging.getLogger(__name__)


_CACHES: "weakref.WeakSet[KeyCache]" = weakref.WeakSet()


class KeyCache:
    """hash -> (the key's row as read, expiry), this process only.

    The cached `ApiKey` is a detached copy shared by concurrent requests: read it, never change
    it or add it to a session (routes that change a key read it by id). Lookups run in a short
    session of their own (no request holds a connection for its key), and concurrent requests
    with the same key wait for one lookup instead of each sending one: when an entry expires
    under load, 200 requests in flight would otherwise ask at once."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[ApiKey, float]] = {}
        self._lookups: dict[str, asyncio.Future[ApiKey | None]] = {}
        _CACHES.add(self)

    async def authenticate(
        self, maker: async_sessionmaker[AsyncSession], plain: str
    ) -> ApiKey | None:
        """The live key, or None for an unknown or revoked key."""
        digest = hash_key(plain)
        cached = self._entries.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            expires_at = cached[0].expires_at
            if expires_at is None or expires_at > utcnow():
                return cached[0]
            self._entries.pop(digest, None)  # expired while cached: looked up (and refused) below
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(maker, plain, digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
        # Shielded: one waiter going away must not cancel the lookup the others wait for.
        return await asyncio.shield(lookup)

    async def _lookup(
        self, maker: async_sessionmaker[AsyncSession], plain: str, digest: str
    ) -> ApiKey | None:
        async with maker() as session:
            found = await authenticate(session, plain)
        if found is None:
            self._entries.pop(digest, None)
            return None
        key = ApiKey(**found[0].model_dump())  # a copy that belongs to no session
        if self.ttl > 0:
            if len(self._entries) > 100_000:  # keys are few; this only bounds a pathological case
                self._entries.clear()
            self._entries[digest] = (key, time.monotonic() + self.ttl)
        return key

    def forget(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)


def forget_everywhere(key_hash: str) -> None:
    """Drop a key from every cache of this process (it was revoked here)."""
    for cache in list(_CACHES):
        cache.forget(key_hash)


class KeyUsage:
    """Notes when keys are used; `flush` writes the newest time per key in one statement."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self.maker = maker
        self._pending: dict[str, datetime] = {}

    def touch(self, key_id: str) -> None:
        self._pending[key_id] = utcnow()

    async def flush(self) -> int:
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        table = ApiKey.__table__  # type: ignore[attr-defined]
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("key_id"),
                # Never backwards: another process may have written a later time.
                or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("t")),
            )
            .values(last_used_at=bindparam("t"))
        )
        rows = [{"key_id": key_id, "t": when} for key_id, when in pending.items()]
        async with self.maker() as session:
            await begin_write(session)
            await (await session.connection()).execute(statement, rows)
            await session.commit()
        return len(rows)

    @contextlib.asynccontextmanager
    async def flushing(self, every_seconds: float) -> AsyncIterator[None]:
        """Flush every `every_seconds` while the block runs, and once at its end."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(every_seconds)
                try:
                    await self.flush()
                except Exception:  # the next flush tries again; usage is not worth a crash
                    log.exception("could not write API keys' last_used_at")

        task = asyncio.create_task(loop(), name="docsift-key-usage")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await self.flush()
            except Exception:
                log.exception("could not write API keys' last_used_at")
