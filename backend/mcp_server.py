"""DocSift as MCP tools for agents (SPEC §6): streamable HTTP under /mcp, same keys, credits, errors.

The key is checked before the MCP layer, by the same code as the REST API: a missing, invalid or
revoked key gets the REST 403 contract body and a rate-limited key the REST 429. MCP's own
authorization model is HTTP-level too (401/403 before any JSON-RPC), so every client already
handles it, and no anonymous request ever reaches a tool.

Tools call the same services as the REST routes (so billing is the same), each in its own database
session committed once. An `ApiError` becomes a tool result with `isError` set whose text is the
contract's error body, e.g. `{"success": false, "error": "invalid_request", "message": "..."}`.

The transport is stateless JSON: every POST carries its key and is served on its own, so any
worker of a multi-process deployment can answer it, and tools never call back into the client.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.accounts.keys import authenticate
from backend.config import Settings
from backend.errors import ApiError, InvalidApiKey
from backend.mcp_tools import KEY_STATE_KEY, build_server
from backend.state import AppState

MCP_PATH = "/mcp"
# Room for the JSON-RPC envelope around a base64 upload.
ENVELOPE_BYTES = 64 * 1024


class ApiKeyGate:
    """ASGI wrapper: authenticates `x-api-key` and applies the key's rate limit before MCP runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.docsift
        try:
            key_id = await _authenticate(state, Headers(scope=scope).get("x-api-key"))
        except ApiError as error:
            response = JSONResponse(error.body(), error.status_code, headers=error.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[KEY_STATE_KEY] = key_id
        await self.app(scope, receive, send)


async def _authenticate(state: AppState, api_key: str | None) -> str:
    """The key's id, after the same checks (and messages) as `deps.get_current_key`."""
    if not api_key:
        raise InvalidApiKey("Missing API key: send it in the x-api-key header.")
    async with state.sessionmaker() as session:
        found = await authenticate(session, api_key)
    if found is None:
        raise InvalidApiKey("Invalid, revoked or expired API key.")
    key, account = found
    await state.rate_limiter.hit(key.id)
    return key.id


@dataclass
class McpEndpoint:
    """The mounted MCP server and its session manager, whose task group must run with the app."""

    server: MCPServer
    sessions: StreamableHTTPSessionManager

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the session manager for the app's lifetime; enter it in the app's lifespan.

        Its task group lives in a task of its own: an anyio task group must be left by the task
        that entered it, and the lifespan's start and stop may run in different tasks (pytest's
        async fixtures do that).
        """
        started, stop = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with self.sessions.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(serve(), name="docsift-mcp-sessions")
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiter.cancel()
            task.result()  # raises why the manager could not start
        try:
            yield
        finally:
            stop.set()
            await task


def mount_mcp(app: FastAPI, settings: Settings) -> McpEndpoint:
    """Serve the MCP tools at /mcp; the app's lifespan must enter the returned endpoint's `run()`."""
    server = build_server(version=app.version)
    # Called for its side effect: it builds `server.session_manager`, which our own route serves.
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        max_request_body_size=settings.max_upload_bytes * 4 // 3 + ENVELOPE_BYTES,
        # Host/Origin checks are off: every request needs the key in a custom header, which a
        # browser never sends cross-origin without a CORS preflight (DNS rebinding gains nothing).
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    sessions = server.session_manager
    # A Route (not a Mount) so that "/mcp" itself matches, with no redirect to "/mcp/".
    app.router.routes.append(Route(MCP_PATH, endpoint=ApiKeyGate(sessions.handle_request)))
    return McpEndpoint(server=server, sessions=sessions)
