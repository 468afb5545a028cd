"""A fake OpenAI-compatible server on 127.0.0.1 for end-to-end tests of the real LiteLLM path.

A function decides each answer; every request body is recorded. Helpers build the usual answers:
logprobs over label codes, no logprobs, errors with Retry-After, delays, hangs, a body that stops
half-way, malformed JSON, a JSON distribution without logprobs, a structured multi-label answer
with per-token logprobs. `ReadingModel` answers from the prompt as a model would (with a position
bias if asked). `BlackHole` is a port that accepts connections and never answers.
"""

import asyncio
import base64
import contextlib
import json
import math
import re
import socket
import struct
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


def tokens_completion(tokens: list[tuple[str, list[tuple[str, float]]]]) -> dict:
    """A completion whose answer is the tokens' concatenation, each token with its (token,
    probability) alternatives: what a structured answer with logprobs looks like."""
    body = completion("".join(t for t, _ in tokens), None)
    body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": token,
                "logprob": math.log(dict(top).get(token, top[0][1])),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in top
                ],
            }
            for token, top in tokens
        ]
    }
    body["choices"][0]["finish_reason"] = "stop"
    body["usage"]["completion_tokens"] = len(tokens)
    return body


def json_reply(probabilities: dict[str, float]) -> Reply:
    """A model without logprobs answering with a JSON distribution (code -> probability)."""
    return Reply(body=completion(json.dumps(probabilities), None))


def yes_no_reply(p_yes: dict[str, float]) -> Reply:
    """A structured multi-label answer {"A": "yes", ...}: each value token carries the logprobs
    of "yes" and "no" (P(yes) = p_yes[code]); the answered value is the likelier one."""
    tokens: list[tuple[str, list[tuple[str, float]]]] = [('{"', [('{"', 1.0)])]
    for i, (code, p) in enumerate(p_yes.items()):
        top = sorted([("yes", max(p, 1e-6)), ("no", max(1 - p, 1e-6))], key=lambda t: -t[1])
        tokens += [
            (code, [(code, 1.0)]),
            ('": "', [('": "', 1.0)]),
            (top[0][0], top),
            ('", "' if i < len(p_yes) - 1 else '"}', [('"', 1.0)]),
        ]
    return Reply(body=tokens_completion(tokens))


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts (text and images)
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


@dataclass
class ReadingModel:
    """Answers from the prompt like a (small) model: a label's logit is `weight` per mention of
    its name in the document, plus `bias` for the first code listed (position bias: it wins
    unless the evidence is strong). Answers in the format the prompt asks for: a code with
    logprobs, a JSON distribution, or a JSON yes/no per code with per-token logprobs; with
    `logprobs=False` it ignores the logprobs parameter, as Anthropic's or Vertex's models do."""

    bias: float = 0.0
    weight: float = 1.2
    logprobs: bool = True
    multi_label_offset: float = 1.5  # P(yes) = sigmoid(weight * mentions - offset)

    def scores(self, request: dict[str, Any]) -> tuple[list[str], list[float]]:
        """(codes in listed order, logits)."""
        text = "\n".join(_text_of(m) for m in request["messages"])
        listed = re.findall(r"^([A-Z0-9]): ([^:\n]+): ", text.split("Rules:")[0], re.MULTILINE)
        document = text.split("<document>\n", 1)[-1].split("\n</document>", 1)[0].lower()
        codes, logits = [], []
        for position, (code, label) in enumerate(listed):
            mentions = len(re.findall(rf"\b{re.escape(label.lower())}\b", document))
            codes.append(code)
            logits.append(self.weight * mentions + (self.bias if position == 0 else 0.0))
        return codes, logits

    def __call__(self, request: dict[str, Any]) -> Reply:
        codes, logits = self.scores(request)
        text = "\n".join(_text_of(m) for m in request["messages"])
        if '"yes"' in text.rsplit("</document>", 1)[-1]:
            p_yes = {
                c: 1 / (1 + math.exp(-(x - self.multi_label_offset)))
                for c, x in zip(codes, logits, strict=True)
            }
            if self.logprobs:
                return yes_no_reply(p_yes)
            return Reply(
                body=completion(
                    json.dumps({c: "yes" if p >= 0.5 else "no" for c, p in p_yes.items()}), None
                )
            )
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        probabilities = {c: w / sum(weights) for c, w in zip(codes, weights, strict=True)}
        if "JSON object" in text.rsplit("</document>", 1)[-1]:
            if "judged on its own" in text:  # multi-label probabilities
                return json_reply(
                    {
                        c: round(1 / (1 + math.exp(-(x - self.multi_label_offset))), 4)
                        for c, x in zip(codes, logits, strict=True)
                    }
                )
            return json_reply({c: round(p, 4) for c, p in probabilities.items()})
        ranked = sorted(probabilities.items(), key=lambda t: -t[1])
        wants = request.get("logprobs") and self.logprobs
        return Reply(body=completion(ranked[0][0], ranked if wants else None))


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
        return text_parts(self.requests[-1])

    def last_images(self) -> "list[SentImage]":
        return image_parts(self.requests[-1])


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


@dataclass(frozen=True)
class SentImage:
    """An image part of a request, where it stood and what the server can check of it."""

    page: int | None  # the "--- Page n ---" it follows in the document (None: an example's)
    example: str | None  # the example's answer code when it stands in an <example> block
    width: int
    height: int
    detail: str | None
    text_before: str  # the page's own text sent before it ("" in image-only modes)


_PAGE = re.compile(r"--- Page (\d+) ---")
_EXAMPLE = re.compile(r'<example answer="([^"]*)">')


def image_parts(body: dict[str, Any]) -> list[SentImage]:
    """Every image part of a chat request, attributed to its page or example by the text parts
    around it (the prompt templates' page headers and example blocks)."""
    found = []
    text = ""
    for message in body["messages"]:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            if part["type"] == "text":
                text += part["text"]
                continue
            url = part["image_url"]["url"]
            header, _, encoded = url.partition(",")
            assert header == "data:image/png;base64", header
            png = base64.b64decode(encoded)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            width, height = struct.unpack(">LL", png[16:24])
            page = _PAGE.search(text[text.rfind("--- Page ") :] if "--- Page " in text else "")
            example = _EXAMPLE.search(text[text.rfind("<example") :] if "<example" in text else "")
            in_example = example is not None and text.rfind("<example") > max(
                text.rfind("</example>"), text.rfind("<document>")
            )
            after_header = text[text.rfind("--- Page ") :] if page else ""
            found.append(
                SentImage(
                    page=None if in_example or page is None else int(page.group(1)),
                    example=example.group(1) if in_example and example else None,
                    width=width,
                    height=height,
                    detail=part["image_url"].get("detail"),
                    text_before=after_header.split("---", 2)[-1].strip() if page else "",
                )
            )
            text += "[image]"
    return found


def text_parts(body: dict[str, Any]) -> str:
    """The request's text, image parts left out."""
    out = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            out += [p["text"] for p in content if p["type"] == "text"]
    return "\n".join(out)


def vision_reply(body: dict[str, Any]) -> Reply:
    """Answers from what the server can see: code B (second label) with 0.9 when the first
    page image is portrait (a page), code A with 0.9 when the request has no image at all."""
    images = [i for i in image_parts(body) if i.page is not None]
    portrait = bool(images) and images[0].height > images[0].width
    return codes_reply([0.05, 0.9, 0.05] if portrait else [0.9, 0.05, 0.05])


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
