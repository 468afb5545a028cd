"""The process entry point (`uvicorn backend.asgi:app`): `/healthz` answers at once, the app loads
behind it.

Importing the app (FastAPI, SQLAlchemy, scikit-learn, the routers) takes 5-10 s on a busy
machine and `import litellm` as long again; a liveness probe must not wait for either. This
module imports almost nothing: on start-up it says "started" to the server at once, imports
`backend.main` in a thread, runs the real app's lifespan, and from then on hands every request to
it. Meanwhile `/healthz` answers 200 (the process is alive), `/readyz` 503 with what is still
loading, and other requests wait for the app (up to `BOOT_WAIT_SECONDS`, then 503).
"""

import backend.offline  # noqa: F401, I001  (must run before litellm or tiktoken are imported)

import asyncio
import gc
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

BOOT_WAIT_SECONDS = 120.0
log = logging.getLogger("docsift.boot")


def load_main_app() -> ASGIApp:
    return importlib.import_module("backend.main").app


def model_path_ready(app: Any) -> bool:
    """True once every backend's model path is loaded: LiteLLM imported when an LLM backend is
    registered (it loads in the background from the app's start-up)."""
    state = getattr(getattr(app, "state", None), "docsift", None)
    if state is None:
        return False
    client = sys.modules.get("backend.backends.llm.client")
    uses_litellm = any(
        type(b).__module__.startswith("backend.backends.llm") for b in state.backends.backends
    )
    return not uses_litellm or (client is not None and client._litellm is not None)


class BootingApp:
    """ASGI app that is live at once and serves the real app once it has loaded."""

    def __init__(self, loader: Callable[[], ASGIApp] = load_main_app) -> None:
        self.loader = loader
        self.app: ASGIApp | None = None
        self.error: str | None = None
        self.started_at = time.monotonic()
        self.ready_after: float | None = None
        self._loaded: asyncio.Event | None = None
        self._boot: asyncio.Task | None = None
        self._inner_events: asyncio.Queue | None = None
        self._inner_done: asyncio.Queue | None = None
        self._inner_task: asyncio.Task | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path = scope.get("path")
        if scope["type"] == "http" and path == "/healthz":
            ok = self.error is None
            await _json(send, 200 if ok else 503, {"status": "ok" if ok else "failed"})
            return
        if scope["type"] == "http" and path == "/readyz":
            await self._readyz(send)
            return
        if self.app is None:
            loaded = self._loaded
            if loaded is not None and self.error is None:
                try:
                    async with asyncio.timeout(BOOT_WAIT_SECONDS):
                        await loaded.wait()
                except TimeoutError:
                    pass
            if self.app is None:
                if scope["type"] == "http":
                    await _json(send, 503, _starting_error(self.error))
                return
        await self.app(scope, receive, send)

    async def _readyz(self, send: Send) -> None:
        app_ready = self.app is not None
        models_ready = app_ready and model_path_ready(self.app)
        body = {
            "status": "ready" if models_ready else ("failed" if self.error else "starting"),
            "app": app_ready,
            "model_path": models_ready,
            "since_start_s": round(time.monotonic() - self.started_at, 2),
        }
        if self.ready_after is not None:
            body["app_ready_after_s"] = round(self.ready_after, 2)
        await _json(send, 200 if models_ready else 503, body)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loaded = asyncio.Event()
                self._boot = asyncio.create_task(self._load(scope), name="docsift-boot")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _load(self, scope: Scope) -> None:
        try:
            app = await asyncio.to_thread(self.loader)
            self._inner_events, self._inner_done = asyncio.Queue(), asyncio.Queue()
            inner_scope = {**scope, "state": scope.get("state", {})}
            self._inner_task = asyncio.create_task(
                app(inner_scope, self._inner_events.get, self._inner_done.put)
            )
            await self._inner_events.put({"type": "lifespan.startup"})
            done = await self._first_of(self._inner_done.get())
            if done is None or done["type"] != "lifespan.startup.complete":
                raise RuntimeError((done or {}).get("message") or "the app's start-up failed")
            self.app = app
            self.ready_after = time.monotonic() - self.started_at
            await self._freeze_heap_when_ready(app)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - reported, then the process stops
            self.error = f"{type(error).__name__}: {error}"
            log.exception("DocSift failed to start")
            # As uvicorn does when start-up fails: the process ends, a supervisor restarts it.
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            assert self._loaded is not None
            self._loaded.set()

    async def _freeze_heap_when_ready(self, app: ASGIApp) -> None:
        """Once the app and its model path are loaded, move every object alive (modules, the
        app, LiteLLM: most of the heap, and never garbage) out of the garbage collector's sight.
        Full collections then scan only what requests create. Measured (bench.overhead's load,
        200 clients): a full collection of the loaded heap took 0.35 s, stalling every request
        in flight, and freezing raised one process's throughput by about 15%. No collection
        first: it would pause the loop as long, for a few MB of start-up garbage."""
        if getattr(getattr(app, "state", None), "docsift", None) is None:
            return  # not DocSift's app (tests serving a stand-in)
        waited = 0.0
        while not model_path_ready(app) and waited < BOOT_WAIT_SECONDS * 5:
            await asyncio.sleep(0.2)
            waited += 0.2
        gc.freeze()
        log.info(
            "start-up heap frozen: %d objects left out of garbage collection", gc.get_freeze_count()
        )

    async def _first_of(self, waiting: Any) -> dict | None:
        """The inner lifespan's reply, or None if the inner app ended without one."""
        assert self._inner_task is not None
        reply = asyncio.ensure_future(waiting)
        await asyncio.wait({reply, self._inner_task}, return_when=asyncio.FIRST_COMPLETED)
        if reply.done():
            return reply.result()
        reply.cancel()
        if self._inner_task.exception() is not None:
            raise self._inner_task.exception()  # type: ignore[misc]
        return None

    async def _shutdown(self) -> None:
        if self._boot is not None and not self._boot.done():
            self._boot.cancel()
        if self.app is not None and self._inner_events is not None and self._inner_done:
            await self._inner_events.put({"type": "lifespan.shutdown"})
            await self._first_of(self._inner_done.get())
        if self._inner_task is not None and not self._inner_task.done():
            self._inner_task.cancel()


def _starting_error(error: str | None) -> dict:
    message = (
        "DocSift failed to start; see its logs."
        if error
        else "DocSift is still starting; retry shortly (GET /readyz says when it is ready)."
    )
    # The contract's error body (backend/errors.py), without importing it.
    return {"success": False, "error": "service_unavailable", "message": message}


async def _json(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


app = BootingApp()
