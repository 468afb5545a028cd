"""The FastAPI application: `create_app()` wires settings, database, backends and routers."""

import backend.offline  # noqa: F401, I001  (must run before litellm or tiktoken are imported)

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from backend.api import api_router
from backend.backends.registry import BackendRegistry
from backend.billing import ledger
from backend.config import Settings, get_settings
from backend.db import create_engine, create_sessionmaker
from backend.errors_handlers import install_error_handlers
from backend.evaluation import runner
from backend.mcp_server import mount_mcp
from backend.migrate import upgrade
from backend.observability import RequestContextMiddleware, configure_logging
from backend.ratelimit import KeyRateLimiter
from backend.state import AppState

log = logging.getLogger("docsift")


def create_app(
    settings: Settings | None = None, backends: BackendRegistry | None = None
) -> FastAPI:
    """Build the app; tests pass their own settings and backends."""
    settings = settings or get_settings()
    configure_logging(json_logs=settings.log_json, level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        await upgrade(engine)
        maker = create_sessionmaker(engine)
        registry = backends or BackendRegistry.from_entry_points(settings)
        await registry.startup()
        settings.storage_dir.mkdir(parents=True, exist_ok=True)
        # Holds older than any request may live were left by a crashed process.
        stale = timedelta(seconds=settings.model_total_timeout_seconds * 10)
        await ledger.release_stale(maker, older_than=stale)
        app.state.docsift = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=maker,
            backends=registry,
            rate_limiter=KeyRateLimiter(
                settings.rate_limit_per_minute, settings.rate_limit_storage
            ),
            # Spawned lazily on the first OCR job; "spawn" because forking a process that runs
            # an event loop and threads is unsafe.
            executor=ProcessPoolExecutor(
                max_workers=settings.ocr_workers or os.cpu_count() or 1,
                mp_context=multiprocessing.get_context("spawn"),
            ),
        )
        # Evaluation runs a dead process left behind carry on here.
        await runner.resume_unfinished(app.state.docsift)
        try:
            # The MCP endpoint's task group lives as long as the app (see backend/mcp_server.py).
            async with mcp_endpoint.run():
                yield
        finally:
            app.state.docsift.executor.shutdown(wait=False, cancel_futures=True)
            await registry.shutdown()
            await engine.dispose()

    app = FastAPI(
        title="DocSift",
        version="0.1.0",
        summary="Self-hosted document classification with calibrated confidence.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(api_router)
    mcp_endpoint = mount_mcp(app, settings)
    return app


app = create_app()
