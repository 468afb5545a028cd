"""DocSift's own request path, without a model or a socket: sequential classify requests through
the app in-process (httpx's ASGI transport) with a backend that answers at once, against
`GET /healthz` (the framework's floor) and an authenticated `GET /v1/account`.

    python -m bench.request_path [--requests 300] [--database sqlite|postgres]

Writes bench/results/request_path.json (request_path_postgres.json for --database postgres, a
throwaway database on the tests' server). The figures include the in-process client's own cost
(about the same for every route), so differences between routes are what to read. Logs at
WARNING: the access log line each request writes at INFO is left out.
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from backend.backends.fake import FunctionBackend
from bench.harness import write_result
from tests.conftest import (
    POSTGRES_URL,
    _create_postgres_database,
    make_settings,
    start_harness,
)
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A request for payment"},
    {"label": "other", "description": "Anything else"},
]


async def _time_routes(harness, requests: int) -> dict:  # noqa: ANN001 - tests' Harness
    tenant = await harness.tenant(credits=10 * requests + 100)
    doc = await make_document(harness, tenant, ["INVOICE 7. Amount due 120.00 EUR. " * 20])
    body = {"document_id": doc, "classification_schema": SCHEMA}
    routes = {
        "POST /v1/classify": lambda: harness.client.post(
            "/v1/classify", json=body, headers=tenant.headers
        ),
        "GET /v1/account": lambda: harness.client.get("/v1/account", headers=tenant.headers),
        "GET /healthz": lambda: harness.client.get("/healthz"),
    }
    result = {}
    for name, call in routes.items():
        for _ in range(20):  # warm
            assert (await call()).status_code == 200
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = await call()
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        result[name] = {
            "median_ms": round(statistics.median(times) * 1000, 2),
            "mean_ms": round(statistics.fmean(times) * 1000, 2),
        }
    return result


async def measure(requests: int, database: str = "sqlite") -> dict:
    folder = Path(tempfile.mkdtemp(prefix="docsift-path-"))
    url, drop = f"sqlite:///{folder / 'path.db'}", None
    if database == "postgres":  # a throwaway database on the tests' server
        url, drop = _create_postgres_database(POSTGRES_URL)
    settings = make_settings(url, folder, log_level="WARNING")
    running = start_harness(settings, [FunctionBackend()])
    harness = await anext(running)
    try:
        return await _time_routes(harness, requests)
    finally:
        await running.aclose()  # the app's shutdown
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    result = {
        "requests_per_route": args.requests,
        "database": args.database,
        "routes": asyncio.run(measure(args.requests, args.database)),
        "command": "python -m bench.request_path " + " ".join(sys.argv[1:]),
    }
    write_result("request_path" + ("" if args.database == "sqlite" else "_postgres"), result)
    print(result)


if __name__ == "__main__":
    main()
