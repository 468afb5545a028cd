"""A reference gateway: the least any FastAPI service can do around one LiteLLM call with k
PostgreSQL round trips, to tell this machine's floor from DocSift's own cost.

`bench.overhead` starts it three times beside DocSift (PostgreSQL part) and interleaves all of
them with the bare call, so every ratio comes from the same run:

- 0 round trips: the request read, the bare call's `litellm.acompletion` (the same prompt and
  LiteLLM configuration, its logging deferred past the answer as DocSift defers it), its first
  token answered as JSON;
- 1 round trip: the same, then one durable INSERT (autocommit, the WAL flushed), the least a
  debit written before the answer can be;
- 2 round trips: a `SELECT 1` before the call as well, the least a credit check before the
  model can be.

The contract (README, Credits) asks for both: credits checked before the model is called and the
debit written when the classification completes, before its result is answered. So the 2-round-
trip figure bounds what any implementation of it reaches on the machine measured.

    uvicorn bench.gateway_floor:app  (GATEWAY_MODEL_BASE, GATEWAY_DATABASE, GATEWAY_ROUND_TRIPS)
"""

import backend.offline  # noqa: F401, I001

import os
import random
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager

import aiohttp
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from psycopg_pool import AsyncConnectionPool

from backend.backends.llm.client import deferred_logging
from bench.harness import REPO, free_port, interleaved, wait_healthy
from bench.server import _bare_call

ROUND_TRIPS = int(os.environ.get("GATEWAY_ROUND_TRIPS", "0"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.call = _bare_call(os.environ["GATEWAY_MODEL_BASE"])
    app.state.pool = None
    if ROUND_TRIPS:
        pool = AsyncConnectionPool(
            os.environ["GATEWAY_DATABASE"], min_size=1, max_size=10, kwargs={"autocommit": True}
        )
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS gateway_floor (id bigserial PRIMARY KEY, answer text)"
            )
        app.state.pool = pool
    try:
        yield
    finally:
        if app.state.pool is not None:
            await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


@app.post("/classify")
async def classify(body: dict) -> ORJSONResponse:
    pool = app.state.pool
    if ROUND_TRIPS >= 2:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
    with deferred_logging():  # LiteLLM's logging after the INSERT, as DocSift runs it
        response = await app.state.call()
        answer = response.choices[0].message.content
        if ROUND_TRIPS >= 1:
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO gateway_floor (answer) VALUES (%s)", (answer,))
    return ORJSONResponse({"answer": answer})


@contextmanager
def gateway_server(model_base: str, database: str, round_trips: int) -> Iterator[str]:
    """The reference gateway under uvicorn, as `docsift_server` runs DocSift; yields its URL."""
    port = free_port()
    env = os.environ | {
        "GATEWAY_MODEL_BASE": model_base,
        "GATEWAY_DATABASE": database,
        "GATEWAY_ROUND_TRIPS": str(round_trips),
    }
    command = [sys.executable, "-m", "uvicorn", "bench.gateway_floor:app", "--no-access-log"]
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/healthz")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


async def floor(
    docsift: Callable[[], Awaitable[int]], model_base: str, database: str, requests: int
) -> dict:
    """DocSift, the bare call and the gateway with 0, 1 and 2 round trips, interleaved (in a
    new random order each round, so machine noise and what ran just before hit them alike):
    medians and ratios to the bare call."""
    with ExitStack() as stack:
        urls = [stack.enter_context(gateway_server(model_base, database, k)) for k in (0, 1, 2)]
        async with aiohttp.ClientSession() as session:

            def gateway(url: str) -> Callable[[], Awaitable[int]]:
                async def call() -> int:
                    async with session.post(url + "/classify", json={}) as response:
                        await response.read()
                        return response.status

                return call

            bare_call = _bare_call(model_base)

            async def bare() -> int:
                await bare_call()
                return 200

            targets = {"docsift": docsift, "bare_litellm": bare} | {
                f"gateway_{k}_round_trips": gateway(url) for k, url in enumerate(urls)
            }
            for name, target in targets.items():  # warm every path
                for _ in range(20):
                    assert await target() == 200, name
            times = await interleaved(targets, requests, random.Random(0))
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    bare_ms = medians["bare_litellm"]
    return {
        "requests": requests,
        "median_ms": {name: round(ms, 2) for name, ms in medians.items()},
        "ratio_to_bare_litellm": {
            name: round(ms / bare_ms, 3) for name, ms in medians.items() if name != "bare_litellm"
        },
    }
