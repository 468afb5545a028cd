"""A webhook receiver on 127.0.0.1 (uvicorn in a thread) that records every request and checks
its signature, answering with the statuses a test asks for."""

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.served import free_port, serve_in_thread


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    signature_valid: bool | None  # None: no secret known yet

    @property
    def event_id(self) -> str:
        return self.headers.get(EVENT_ID_HEADER.lower(), "")


@dataclass
class Receiver:
    # Status to answer for the n-th request (0-based); 200 by default.
    status_for: Callable[[int], int] = lambda _n: 200
    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        valid = (
            verify(self.secret, body, headers.get(SIGNATURE_HEADER.lower()))
            if self.secret
            else None
        )
        status = self.status_for(len(self.received))
        self.received.append(Received(body=body, headers=headers, signature_valid=valid))
        return JSONResponse({"ok": status < 300}, status_code=status)

    def start(self) -> "Receiver":
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        self._served = serve_in_thread(app, port=self.port, lifespan="off")
        return self

    def stop(self) -> None:
        self._served.stop(timeout=5)
