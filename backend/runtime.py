"""What an API process and a queue worker share: open the database, backends and queue once,
close them in reverse order. The API lifespan and `docsift worker` both go through `open_state`."""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor

from backend.accounts.keycache import KeyCache, KeyUsage
from backend.backends.llm import client as llm_client
from backend.backends.registry import BackendRegistry
from backend.billing import ledger
from backend.classification.fastpath import open_store
from backend.config import Settings
from backend.db import create_engine, create_sessionmaker
from backend.documents.crypto import Cipher
from backend.migrate import upgrade
from backend.queue import Queue
from backend.ratelimit import KeyRateLimiter
from backend.state import AppState

log = logging.getLogger("docsift")


def check_web_concurrency(settings: Settings, environ: "dict[str, str] | None" = None) -> None:
    """Several API processes (`WEB_CONCURRENCY`, which uvicorn reads for --workers) need
    PostgreSQL: on SQLite each process would run its own in-memory queue (and re-run the
    others' unfinished jobs at start-up), keep its own rate-limit counts, and its writers would
    queue for the single writer lock by polling across processes instead of in turn."""
    env = os.environ if environ is None else environ
    workers = env.get("WEB_CONCURRENCY", "").strip()
    if not settings.is_postgres and workers.isdigit() and int(workers) > 1:
        raise RuntimeError(
            f"WEB_CONCURRENCY={workers} needs PostgreSQL (DOCSIFT_DATABASE_URL=postgresql://...);"
            " on SQLite run one API process."
        )


@contextlib.asynccontextmanager
async def open_state(
    settings: Settings,
    backends: BackendRegistry | None = None,
    *,
    executor: Executor | None = None,
    queue_pool_size: int = 4,
) -> AsyncIterator[AppState]:
    """Engine (migrated), backends, queue and rate limiter, for as long as the block runs."""
    cipher = Cipher.from_setting(settings.encryption_key)  # a malformed key stops start-up here
    llm_client.install_loop_executor()
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        ping_idle_seconds=settings.db_ping_idle_seconds,
    )
    try:
        await upgrade(engine)
        maker = create_sessionmaker(engine)
        registry = backends or BackendRegistry.from_entry_points(settings)
        await registry.startup()
        try:
            settings.storage_dir.mkdir(parents=True, exist_ok=True)
            # Holds older than any request may live were left by a crashed process.
            stale = ledger.stale_after(settings.model_total_timeout_seconds)
            await ledger.release_stale(maker, older_than=stale)
            queue = Queue(settings, pool_size=queue_pool_size)
            await queue.open()
            fast_store = await open_store(engine, settings)
            try:
                yield AppState(
                    settings=settings,
                    engine=engine,
                    sessionmaker=maker,
                    backends=registry,
                    rate_limiter=KeyRateLimiter(
                        settings.rate_limit_per_minute,
                        settings.resolved_rate_limit_storage,
                        sessionmaker=maker,
                    ),
                    queue=queue,
                    executor=executor,
                    cipher=cipher,
                    key_cache=KeyCache(settings.api_key_cache_seconds),
                    key_usage=KeyUsage(maker),
                    fast_store=fast_store,
                )
            finally:
                if fast_store is not None:
                    await fast_store.close()
                await queue.close()
        finally:
            await registry.shutdown()
    finally:
        await engine.dispose()


async def resume_unfinished(state: AppState) -> None:
    """Hand work a dead process left behind back to the queue (needed where the broker is in
    memory; on PostgreSQL the jobs outlive processes and this only catches older runs)."""
    from backend.batches.tasks import resume as resume_batches
    from backend.documents.conversion import resume as resume_conversions
    from backend.evaluation.runner import resume_unfinished as resume_evaluations
    from backend.webhooks.delivery import resume as resume_deliveries

    await resume_evaluations(state)
    if state.queue.in_memory:
        await resume_conversions(state)
        await resume_batches(state)
        await resume_deliveries(state)


@contextlib.asynccontextmanager
async def embedded_worker(state: AppState) -> AsyncIterator[None]:
    """Run a queue worker inside this process while the block runs (SQLite's single-machine
    mode, or DOCSIFT_EMBEDDED_WORKER=true)."""
    if not state.settings.runs_embedded_worker:
        yield
        return
    worker = asyncio.create_task(
        state.queue.run_worker(state, name="docsift-embedded", install_signal_handlers=False),
        name="docsift-embedded-worker",
    )
    worker.add_done_callback(_report_crash)
    try:
        yield
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the embedded queue worker stopped", exc_info=task.exception())
