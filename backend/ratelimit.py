"""Per-key rate limits with the `limits` library.

Storage is `memory://` for one process; point DOCSIFT_RATE_LIMIT_STORAGE at Redis or Memcached
(e.g. `async+redis://localhost:6379`) so that several API processes share the counters.
"""

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from backend.errors import RateLimited


class KeyRateLimiter:
    def __init__(self, per_minute: int, storage_uri: str = "memory://") -> None:
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        if storage_uri.startswith("memory://"):
            storage_uri = "async+" + storage_uri
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    async def hit(self, key_id: str) -> None:
        """Count one request for the key, or raise 429 with the seconds until a slot frees."""
        if self.item is None:
            return
        if await self.limiter.hit(self.item, key_id):
            return
        stats = await self.limiter.get_window_stats(self.item, key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"Rate limit of {self.item.amount} requests per minute exceeded for this key.",
            retry_after=retry_after,
        )
