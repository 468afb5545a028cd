"""`docsift worker`: a queue worker process (batches, evaluations, webhook deliveries).

Run as many as the load needs, on any machine that reaches the PostgreSQL database; each takes
jobs from Procrastinate's tables, sends heartbeats, and stops gracefully on SIGTERM or Ctrl-C
(jobs still running after `DOCSIFT_WORKER_SHUTDOWN_SECONDS` are aborted and retried elsewhere).
"""

import backend.offline  # noqa: F401, I001

import asyncio
import logging
import os
import time

from backend.config import Settings
from backend.observability import configure_logging
from backend.runtime import open_state

log = logging.getLogger("docsift")


async def run(settings: Settings, *, concurrency: int | None = None) -> None:
    concurrency = concurrency or settings.worker_concurrency
    async with open_state(settings, queue_pool_size=max(4, concurrency // 2)) as state:
        log.info("queue worker %s started, %s jobs at a time", os.getpid(), concurrency)
        await state.queue.run_worker(
            state, concurrency=concurrency, name=f"docsift-worker-{os.getpid()}"
        )
        log.info("queue worker %s stopped", os.getpid())


def main(settings: Settings, *, concurrency: int | None = None) -> None:
    configure_logging(json_logs=settings.log_json, level=settings.log_level)
    if not settings.is_postgres:
        # The Procfile's worker line must not bring a single-machine (SQLite) set-up down.
        log.warning(
            "docsift worker: with SQLite the API process runs the queue's jobs itself; this "
            "process has nothing to do (set DOCSIFT_DATABASE_URL=postgresql://... for workers)."
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return
    asyncio.run(run(settings, concurrency=concurrency))
