"""A fake OpenAI-compatible server on 127.0.0.1 for end-to-end tests of the real LiteLLM path.

A function decides each answer; every request body is recorded. Helpers build the usual answers:
logprobs over label codes, no logprobs, errors with Retry-After, delays, hangs, a body that stops
half-way, malformed JSON. `BlackHole` is a port that accepts connections and never answers.
"""

import asyncio
import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.served import Served, free_port, serve_in_thread


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (cut short when the server stops)
    hang: bool = False  # never answer (until the server stops)
    stall: bool = False  # send the status, headers and half the body, then nothing more


Responder = Callable[[dict[str, Any]], Reply]


def completion(
    content: str,
    top: list[tuple[str, float]] | None,
    *,
    n: int = 1,
    contents: list[str] | None = None,
) -> dict:
    """An OpenAI chat completion; `top` are (token, probability) alternatives of the first token."""
    logprobs = None
    if top is not None:
        logprobs = {
            "content": [
                {
                    "token": content,
                    "logprob": math.log(top[0][1]),
                    "bytes": list(content.encode()),
                    "top_logprobs": [
                        {"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
                        for t, p in top
                    ],
                }
            ]
        }
    texts = contents or [content] * n
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": "length",
            }
            for i, text in enumerate(texts)
        ],
        "usage": {"prompt_tokens": 321, "completion_tokens": 1, "total_tokens": 322},
    }


def codes_reply(probabilities: list[float], codes: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ") -> Reply:
    """Logprobs putting probability p[i] on code i (first code answered)."""
    top = [(codes[i], p) for i, p in enumerate(probabilities) if p > 0]
    top.sort(key=lambda t: -t[1])
    return Reply(body=completion(top[0][0], top))


class FakeOpenAI:
    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda _req: codes_reply([0.7, 0.2, 0.1]))
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self._served: Served | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        reply = self.responder(body)
        if reply.delay or reply.hang:
            await self._wait(None if reply.hang else reply.delay)
        if reply.stall:
            raw = json.dumps(reply.body).encode()

            async def half_then_nothing():
                yield raw[: len(raw) // 2]
                await self._wait(None)

            return StreamingResponse(half_then_nothing(), media_type="application/json")
        if isinstance(reply.body, (str, bytes)):
            return Response(
                reply.body,
                status_code=reply.status,
                headers=reply.headers,
                media_type="application/json",
            )
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    async def _wait(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: forever), but never past stop()."""
        if self._stopping is None:
            self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def start(self) -> "FakeOpenAI":
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._served = serve_in_thread(app, port=self.port, lifespan="off")
        return self

    def stop(self) -> None:
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._served:
            self._served.stop(timeout=5)

    def last_prompt(self) -> str:
        return "\n".join(m["content"] for m in self.requests[-1]["messages"])


class BlackHole:
    """A port on 127.0.0.1 that accepts connections and never reads or answers them."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._running = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while self._running:
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        for connection in [*self.connections, self._listener]:
            connection.close()


def error_reply(status: int, retry_after: str | None = None) -> Reply:
    headers = {"retry-after": retry_after} if retry_after else {}
    return Reply(
        status=status,
        body={"error": {"message": f"fake {status}", "type": "server_error"}},
        headers=headers,
    )


def json_dumps(value: Any) -> str:
    return json.dumps(value)


def main() -> None:
    """Serve in the foreground: `python -m tests.fake_openai --port 9000 --delay 1.0`."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeOpenAI(
        lambda _r: Reply(
            body=completion("A", [("A", 0.8), ("B", 0.15), ("C", 0.05)]), delay=args.delay
        )
    )
    app = Starlette(routes=[Route("/v1/chat/completions", fake._chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
