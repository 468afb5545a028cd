"""Server overhead and concurrency against a fake OpenAI-compatible model on 127.0.0.1.

    python -m bench.server [--requests 200] [--clients 200] [--seconds 10]

1. Overhead: the classify round trip through DocSift vs a bare `litellm.acompletion` with the same
   prompt to the same fake server (answering at once), sequential, medians compared.
2. Concurrency: N clients in a loop for S seconds, the fake model answering after 1 s; one server
   process. Little's law makes N req/s the ideal. Side by side: N bare `litellm.acompletion` loops
   in one process against the same fake model, LiteLLM's own ceiling on this machine.
3. Start-up: process start to the first answered classify request.
The load generator is aiohttp: an httpx client itself tops out near 40 req/s with 200
connections open (its connection pool scans every connection per request), which would measure
the client, not the server.
Writes bench/results/server.json.
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from bench.harness import cpu_seconds, docsift_server, fake_openai, percentile, write_result
from tests.fixtures.documents import text_pdf

SCHEMA = [
    {
        "label": "invoice",
        "description": "A document requesting payment for goods or services rendered",
    },
    {
        "label": "purchase_order",
        "description": "A buyer-issued document authorizing a purchase from a supplier",
    },
    {"label": "contract", "description": "A legally binding agreement between two or more parties"},
    {"label": "other", "description": "Any document that does not fit the above categories"},
]
# Extra environment for the DocSift server (--database-url sets DOCSIFT_DATABASE_URL).
SERVER_ENV: dict[str, str] = {}
PAGE = "INVOICE 2024-117. Bill to Northwind Traders. Amount due 1,250.00 USD. Net 30. " * 8


@dataclass
class Reply:
    status_code: int
    text: str


class LoadClient:
    """A keep-alive HTTP client for load generation (aiohttp: cheap per request at any concurrency)."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            headers={"x-api-key": key},
            connector=aiohttp.TCPConnector(limit=0),  # no cap: one connection per client
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def post(self, path: str, json: dict) -> Reply:
        async with self.session.post(self.url + path, json=json) as response:
            return Reply(response.status, await response.text())

    async def aclose(self) -> None:
        await self.session.close()


async def _setup(url: str, key: str) -> tuple[LoadClient, str]:
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=60) as client:
        doc = await client.post("/v1/documents", files={"file": ("a.pdf", text_pdf([PAGE]))})
    return LoadClient(url, key), doc.json()["document_id"]


def _body(doc: str) -> dict:
    return {"document_id": doc, "classification_schema": SCHEMA, "query_model": "bench-llm"}


# The bare call's model parameters: the ones DocSift sends for a classification.
BARE_PARAMETERS = {"temperature": 0, "max_tokens": 1, "logprobs": True, "top_logprobs": 20}


def bare_messages() -> list[dict[str, str]]:
    """The messages DocSift sends for `_body`'s classification."""
    from backend.backends.llm.prompts import LabelPrompt, render_classify
    from backend.config import REPO_ROOT

    system, user = render_classify(
        REPO_ROOT / "prompts",
        labels=[
            LabelPrompt(c, s["label"], s["description"])
            for c, s in zip("ABCD", SCHEMA, strict=True)
        ],
        pages=[(1, PAGE)],
        instructions=None,
        examples=[],
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _bare_call(base: str) -> Callable[[], Awaitable[Any]]:
    """A bare `litellm.acompletion` with exactly the prompt DocSift sends for `_body`."""
    from backend.backends.llm import client as llm_client

    lib = llm_client.litellm()  # configured as the server configures it (same HTTP transport)
    messages = bare_messages()

    async def bare() -> Any:
        return await lib.acompletion(
            model="openai/bench",
            api_base=base,
            api_key="none",
            messages=messages,
            max_retries=0,
            **BARE_PARAMETERS,
        )

    return bare


async def overhead(requests: int) -> dict:
    with fake_openai(0.0) as base, docsift_server(base, SERVER_ENV) as (url, key, _, pid, _ready):
        client, doc = await _setup(url, key)
        for _ in range(10):  # warm both paths
            await client.post("/v1/classify", json=_body(doc))
        bare = _bare_call(base)
        for _ in range(10):
            await bare()
        server_times, bare_times = [], []
        for _ in range(requests):  # interleaved, so machine noise hits both alike
            t = time.perf_counter()
            response = await client.post("/v1/classify", json=_body(doc))
            server_times.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text
            t = time.perf_counter()
            await bare()
            bare_times.append(time.perf_counter() - t)
        await client.aclose()
    server_ms, bare_ms = (
        statistics.median(server_times) * 1000,
        statistics.median(bare_times) * 1000,
    )
    return {
        "requests": requests,
        "server_median_ms": round(server_ms, 2),
        "bare_litellm_median_ms": round(bare_ms, 2),
        "ratio": round(server_ms / bare_ms, 3),
        "server_p95_ms": round(percentile(server_times, 95) * 1000, 2),
    }


async def _load(
    call: Callable[[], Awaitable[int]],
    clients: int,
    seconds: float,
    cpu_clock: Callable[[], float] | None = None,
) -> dict:
    """`clients` loops calling `call` (which returns an HTTP status) for `seconds`; with
    `cpu_clock` (CPU seconds of whoever does the work), the CPU the load cost."""
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            t = time.perf_counter()
            try:
                status = await call()
            except Exception as error:  # a benchmark counts failures, whatever they are
                errors.append(type(error).__name__)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors.append(str(status))

    cpu_started = cpu_clock() if cpu_clock else 0.0
    started = time.monotonic()
    await asyncio.gather(*[worker() for _ in range(clients)])
    elapsed = time.monotonic() - started
    result = {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "completed": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 3) if latencies else None,
    }
    if cpu_clock:
        used = cpu_clock() - cpu_started
        result["cpu_cores"] = round(used / elapsed, 2)
        result["cpu_ms_per_request"] = round(used / max(len(latencies), 1) * 1000, 1)
    return result


def _against_ideal(result: dict, delay: float) -> dict:
    """Little's law: `clients` each waiting `delay` for the model make clients / delay req/s."""
    ideal = result["clients"] / delay
    return result | {
        "model_delay_s": delay,
        "ideal_rps": round(ideal, 1),
        "fraction_of_ideal": round(result["throughput_rps"] / ideal, 3),
    }


async def concurrency(clients: int, seconds: float, delay: float) -> dict:
    with fake_openai(delay) as base:
        with docsift_server(base, SERVER_ENV) as (url, key, _, pid, _ready):
            client, doc = await _setup(url, key)
            await client.post("/v1/classify", json=_body(doc))  # warm (litellm import)

            async def classify() -> int:
                return (await client.post("/v1/classify", json=_body(doc))).status_code

            server = await _load(classify, clients, seconds, lambda: cpu_seconds(pid))
            await client.aclose()
        # The server is stopped: now LiteLLM alone, in this process, with the same load.
        bare = _bare_call(base)
        await bare()

        async def bare_status() -> int:
            await bare()
            return 200

        # This process's CPU includes its load loop's: a little high for LiteLLM alone.
        alone = await _load(bare_status, clients, seconds, time.process_time)
    return _against_ideal(server, delay) | {
        "bare_litellm": _against_ideal(alone, delay),
        "fraction_of_bare_litellm": round(server["throughput_rps"] / alone["throughput_rps"], 3),
    }


async def startup() -> dict:
    with fake_openai(0.0) as base:
        started = time.monotonic()
        with docsift_server(base, SERVER_ENV) as (url, key, healthy_after, _, _ready):
            client, doc = await _setup(url, key)
            response = await client.post("/v1/classify", json=_body(doc))
            first_classify = time.monotonic() - started
            assert response.status_code == 200
            await client.aclose()
    return {
        "healthz_after_s": round(healthy_after, 2),
        "first_llm_classify_after_s": round(first_classify, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--database-url", help="the server's database (default: a fresh SQLite)")
    args = parser.parse_args()
    if args.database_url:
        SERVER_ENV["DOCSIFT_DATABASE_URL"] = args.database_url
    result = {
        "overhead": asyncio.run(overhead(args.requests)),
        "concurrency": asyncio.run(concurrency(args.clients, args.seconds, args.delay)),
        "startup": asyncio.run(startup()),
        "command": "python -m bench.server " + " ".join(sys.argv[1:]),
    }
    path = write_result("server_postgres" if args.database_url else "server", result)
    print(__import__("json").dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
