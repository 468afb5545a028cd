"""What the app owns for its lifetime: created in the lifespan, reached through deps."""

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.backends.registry import BackendRegistry
from backend.config import Settings
from backend.ratelimit import KeyRateLimiter

if TYPE_CHECKING:
    from backend.accounts.keycache import KeyCache, KeyUsage
    from backend.classification.fastpath import FastStore
    from backend.documents.crypto import Cipher
    from backend.queue import Queue


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    backends: BackendRegistry
    rate_limiter: KeyRateLimiter
    # The task queue (batches, evaluations, webhooks); see backend/queue.py.
    queue: "Queue"
    # Worker processes for OCR (CPU-bound, GIL-holding); None runs it in the calling thread.
    executor: Executor | None = None
    # Encrypts stored files when DOCSIFT_ENCRYPTION_KEY is set (backend/documents/crypto.py).
    cipher: "Cipher | None" = None
    # API-key lookups cached per process, and keys' last use noted for a batched write.
    key_cache: "KeyCache | None" = None
    key_usage: "KeyUsage | None" = None
    # /v1/classify without the ORM (backend/classification/fastpath/); None: the ORM path.
    fast_store: "FastStore | None" = None
