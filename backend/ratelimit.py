"""Per-key rate limits: a moving window of one minute.

Storage `database` keeps the window in DocSift's own database (table `rate_limit_hit`), so every
API process behind a load balancer counts against the same limit with no other service; it is the
default on PostgreSQL, where a per-key advisory lock makes count-then-insert exact under
concurrency. `memory://` (the default on SQLite) is for one process. A Redis or Memcached URI
(e.g. `async+redis://localhost:6379`) uses the `limits` library's storage instead.
"""

import math
import time
from datetime import timedelta

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from sqlalchemy import delete, func, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.errors import RateLimited
from backend.models import RateLimitHit, utcnow

WINDOW = timedelta(minutes=1)


class KeyRateLimiter:
    def __init__(
        self,
        per_minute: int,
        storage_uri: str = "memory://",
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self.sessionmaker = sessionmaker if storage_uri == "database" else None
        if storage_uri == "database" and sessionmaker is None:
            raise ValueError("database rate-limit storage needs a sessionmaker")
        self.limiter: MovingWindowRateLimiter | None = None
        if self.sessionmaker is None:
            if storage_uri.startswith("memory://"):
                storage_uri = "async+" + storage_uri
            self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def _refuse(self, retry_after: int) -> RateLimited:
        return RateLimited(
            f"Rate limit of {self.per_minute} requests per minute exceeded for this key.",
            retry_after=max(1, retry_after),
        )

    async def hit(self, key_id: str) -> None:
        """Count one request for the key, or raise 429 with the seconds until a slot frees."""
        if self.item is None:
            return
        if self.sessionmaker is not None:
            await self._hit_database(key_id)
            return
        assert self.limiter is not None
        if await self.limiter.hit(self.item, key_id):
            return
        stats = await self.limiter.get_window_stats(self.item, key_id)
        raise self._refuse(math.ceil(stats.reset_time - time.time()))

    async def _hit_database(self, key_id: str) -> None:
        assert self.sessionmaker is not None
        async with self.sessionmaker() as session:
            if session.bind.dialect.name == "postgresql":
                # Serializes this key's requests for the few statements below (freed at commit).
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                    {"key": key_id},
                )
            now = utcnow()
            # This key's expired hits go as it is counted, so the table stays as small as the
            # set of busy keys (the periodic prune catches keys that went quiet).
            await session.execute(
                delete(RateLimitHit).where(
                    RateLimitHit.key == key_id,  # type: ignore[arg-type]
                    RateLimitHit.at <= now - WINDOW,  # type: ignore[arg-type]
                )
            )
            count, oldest = (
                await session.exec(
                    select(func.count(), func.min(RateLimitHit.at)).where(
                        RateLimitHit.key == key_id, RateLimitHit.at > now - WINDOW
                    )
                )
            ).one()
            if count >= self.per_minute:
                await session.rollback()
                if oldest.tzinfo is None:  # SQLite
                    oldest = oldest.replace(tzinfo=now.tzinfo)
                raise self._refuse(math.ceil((oldest + WINDOW - now).total_seconds()))
            session.add(RateLimitHit(key=key_id, at=now))
            await session.commit()

    async def prune(self) -> None:
        """Drop hits older than the window (the periodic recovery job calls this)."""
        if self.sessionmaker is None:
            return
        async with self.sessionmaker() as session:
            await session.execute(
                delete(RateLimitHit).where(RateLimitHit.at < utcnow() - 2 * WINDOW)  # type: ignore[arg-type]
            )
            await session.commit()
