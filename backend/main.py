"""The FastAPI application: `create_app()` wires settings, database, backends and routers."""

import backend.offline  # noqa: F401, I001  (must run before litellm or tiktoken are imported)

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend.api import include_routes
from backend.backends.registry import BackendRegistry
from backend.config import Settings, get_settings
from backend.documents import ocr
from backend.errors_handlers import install_error_handlers
from backend.mcp_server import mount_mcp
from backend.observability import RequestContextMiddleware, configure_logging
from backend.runtime import (
    check_web_concurrency,
    embedded_worker,
    open_state,
    resume_unfinished,
)

log = logging.getLogger("docsift")


def create_app(
    settings: Settings | None = None, backends: BackendRegistry | None = None
) -> FastAPI:
    """Build the app; tests pass their own settings and backends."""
    settings = settings or get_settings()
    configure_logging(json_logs=settings.log_json, level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_web_concurrency(settings)
        # Spawned lazily on the first OCR job; "spawn" because forking a process that runs
        # an event loop and threads is unsafe.
        executor = ocr.make_pool(settings.ocr_workers)
        try:
            async with open_state(settings, backends, executor=executor) as state:
                app.state.docsift = state
                await resume_unfinished(state)
                # The MCP endpoint's task group lives as long as the app (see backend/mcp_server.py).
                usage = state.key_usage.flushing(settings.api_key_last_used_flush_seconds)  # type: ignore[union-attr]
                async with embedded_worker(state), mcp_endpoint.run(), usage:
                    yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="DocSift",
        version="0.1.0",
        summary="Self-hosted document classification with calibrated confidence.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    include_routes(app)
    mcp_endpoint = mount_mcp(app, settings)
    return app


app = create_app()
