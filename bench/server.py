"""Server overhead and concurrency against a fake OpenAI-compatible model on 127.0.0.1.

    python -m bench.server [--requests 200] [--clients 200] [--seconds 10]

1. Overhead: the classify round trip through DocSift vs a bare `litellm.acompletion` with the same
   prompt to the same fake server (answering at once), sequential, medians compared.
2. Concurrency: N clients in a loop for S seconds, the fake model answering after 1 s; one server
   process. Little's law makes N req/s the ideal.
3. Start-up: process start to the first answered classify request.
Writes bench/results/server.json.
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import statistics
import sys
import time

import httpx

from bench.harness import docsift_server, fake_openai, percentile, write_result
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
PAGE = "INVOICE 2024-117. Bill to Northwind Traders. Amount due 1,250.00 USD. Net 30. " * 8


async def _setup(url: str, key: str) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(
        base_url=url,
        headers={"x-api-key": key},
        timeout=60,
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
    )
    doc = await client.post("/v1/documents", files={"file": ("a.pdf", text_pdf([PAGE]))})
    return client, doc.json()["document_id"]


def _body(doc: str) -> dict:
    return {"document_id": doc, "classification_schema": SCHEMA, "query_model": "bench-llm"}


async def overhead(requests: int) -> dict:
    from backend.backends.llm import client as llm_client

    with fake_openai(0.0) as base, docsift_server(base) as (url, key, _):
        client, doc = await _setup(url, key)
        for _ in range(10):  # warm both paths
            await client.post("/v1/classify", json=_body(doc))
        lib = llm_client.litellm()
        # The exact prompt DocSift sends, replayed bare.
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
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]

        async def bare() -> None:
            await lib.acompletion(
                model="openai/bench",
                api_base=base,
                api_key="none",
                messages=messages,
                temperature=0,
                max_tokens=1,
                logprobs=True,
                top_logprobs=20,
                max_retries=0,
            )

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


async def concurrency(clients: int, seconds: float, delay: float) -> dict:
    with fake_openai(delay) as base, docsift_server(base) as (url, key, _):
        client, doc = await _setup(url, key)
        await client.post("/v1/classify", json=_body(doc))  # warm (litellm import)
        latencies: list[float] = []
        errors: list[str] = []
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", json=_body(doc))
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - t)
                    else:
                        errors.append(str(response.status_code))
                except httpx.HTTPError as error:
                    errors.append(type(error).__name__)

        started = time.monotonic()
        await asyncio.gather(*[worker() for _ in range(clients)])
        elapsed = time.monotonic() - started
        await client.aclose()
    throughput = len(latencies) / elapsed
    return {
        "clients": clients,
        "model_delay_s": delay,
        "seconds": round(elapsed, 2),
        "completed": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "throughput_rps": round(throughput, 1),
        "ideal_rps": round(clients / delay, 1),
        "fraction_of_ideal": round(throughput / (clients / delay), 3),
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 3) if latencies else None,
    }


async def startup() -> dict:
    with fake_openai(0.0) as base:
        started = time.monotonic()
        with docsift_server(base) as (url, key, healthy_after):
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
    args = parser.parse_args()
    result = {
        "overhead": asyncio.run(overhead(args.requests)),
        "concurrency": asyncio.run(concurrency(args.clients, args.seconds, args.delay)),
        "startup": asyncio.run(startup()),
        "command": "python -m bench.server " + " ".join(sys.argv[1:]),
    }
    path = write_result("server", result)
    print(__import__("json").dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
