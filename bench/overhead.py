"""DocSift's own cost per classification, side by side with a bare LiteLLM call, in one run.

    python -m bench.overhead [--requests 200] [--clients 200] [--seconds 10]
                             [--postgres postgresql://docsift:docsift@127.0.0.1:5432/postgres]

For SQLite (a fresh file) and PostgreSQL (a fresh database on the given server), each against a
fake OpenAI-compatible model on 127.0.0.1 (its own process), DocSift under uvicorn as the
Procfile runs it (`backend.asgi:app`, logs at INFO, one JSON access line per request):

1. Start-up: process start to `/healthz` answering, to `/readyz` (app and LiteLLM loaded), to
   the first answered classification.
2. Sequential, the model answering at once: classify round trips interleaved with bare
   `litellm.acompletion` calls carrying the same prompt. The server's CPU (from /proc) per
   request minus the bare call's CPU (this process's CPU during the bare calls only) is DocSift's
   own CPU per classification.
3. 200 clients, the model answering after 1 s, one server process, for S seconds; then bare
   LiteLLM with the same 200 loops in one process (this one) against the same model: the
   throughput ratio, errors, the `x-docsift-overhead-ms` header's p50/p99 under that load.
4. PostgreSQL only: the same load on 2 server processes (`WEB_CONCURRENCY=2`): the speed-up.
5. PostgreSQL only, after 2: the machine's floor (`bench/gateway_floor.py`): a minimal FastAPI
   gateway around the same LiteLLM call with 0, 1 and 2 round trips, interleaved with DocSift
   and the bare call.

Writes bench/results/overhead.json (the machine's load average is recorded beside the numbers:
on a shared machine the ratios within one run are what to read).
"""

import backend.offline  # noqa: F401, I001

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg
import uvloop

from bench.gateway_floor import floor
from bench.harness import Running, docsift_server, fake_openai, percentile, write_result
from bench.server import _bare_call, _body, _load, _setup


def tree_cpu_seconds(pid: int) -> float:
    """CPU (user + system) used so far by a process and all its descendants (uvicorn workers)."""
    total = 0.0
    stack = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            stack.extend(int(child) for child in children)
    return total


class Client:
    """aiohttp keep-alive client that keeps the overhead header of each classification."""

    def __init__(self, url: str, key: str, doc: str, model: str) -> None:
        self.url, self.body = url + "/v1/classify", _body(doc) | {"query_model": model}
        self.session = aiohttp.ClientSession(
            headers={"x-api-key": key},
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.overhead_ms: list[float] = []

    async def classify(self) -> int:
        async with self.session.post(self.url, json=self.body) as response:
            await response.read()
            if response.status == 200:
                self.overhead_ms.append(float(response.headers["x-docsift-overhead-ms"]))
            return response.status

    async def aclose(self) -> None:
        await self.session.close()


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 2) if values else None


def models_env(instant: str, slow: str) -> dict[str, str]:
    """Two models on one server: `bench-llm` answers at once, `bench-slow` after the delay."""
    return {
        "DOCSIFT_MODELS": json.dumps(
            [
                {"name": name, "litellm_model": "openai/bench", "api_base": base, "api_key": "none"}
                for name, base in (("bench-llm", instant), ("bench-slow", slow))
            ]
        )
    }


async def sequential(running: Running, instant: str, requests: int) -> dict:
    """Classify round trips interleaved with bare LiteLLM calls, the model answering at once."""
    loader, doc = await _setup(running.url, running.api_key)
    await loader.aclose()
    client = Client(running.url, running.api_key, doc, "bench-llm")
    for _ in range(20):  # warm both paths
        await client.classify()
    bare = _bare_call(instant)
    for _ in range(20):
        await bare()
    client.overhead_ms.clear()
    server_times, bare_times, bare_cpu = [], [], 0.0
    cpu_before = tree_cpu_seconds(running.pid)
    for _ in range(requests):  # interleaved, so machine noise hits both alike
        t = time.perf_counter()
        assert await client.classify() == 200
        server_times.append(time.perf_counter() - t)
        c, t = time.process_time(), time.perf_counter()
        await bare()
        bare_times.append(time.perf_counter() - t)
        bare_cpu += time.process_time() - c
    server_cpu = tree_cpu_seconds(running.pid) - cpu_before
    await client.aclose()
    server_ms, bare_ms = (
        statistics.median(server_times) * 1000,
        statistics.median(bare_times) * 1000,
    )
    server_cpu_ms, bare_cpu_ms = server_cpu / requests * 1000, bare_cpu / requests * 1000
    return {
        "requests": requests,
        "server_median_ms": round(server_ms, 2),
        "bare_litellm_median_ms": round(bare_ms, 2),
        "round_trip_ratio": round(server_ms / bare_ms, 3),
        "server_cpu_ms_per_request": round(server_cpu_ms, 2),
        "bare_litellm_cpu_ms_per_call": round(bare_cpu_ms, 2),
        "docsift_own_cpu_ms": round(server_cpu_ms - bare_cpu_ms, 2),
        "overhead_header_p50_ms": _ms(client.overhead_ms, 50),
        "overhead_header_p99_ms": _ms(client.overhead_ms, 99),
    }


async def server_load(running: Running, clients: int, seconds: float) -> dict:
    """`clients` loops of classify against the slow model for `seconds`."""
    loader, doc = await _setup(running.url, running.api_key)
    await loader.aclose()
    client = Client(running.url, running.api_key, doc, "bench-slow")
    # Warm every worker process (each loads the app and LiteLLM on its own, and /readyz was
    # answered by one of them): the same load for a while, not measured.
    await _load(client.classify, clients, seconds / 2)
    client.overhead_ms.clear()
    result = await _load(client.classify, clients, seconds, lambda: tree_cpu_seconds(running.pid))
    await client.aclose()
    return result | {
        "overhead_header_p50_ms": _ms(client.overhead_ms, 50),
        "overhead_header_p99_ms": _ms(client.overhead_ms, 99),
    }


async def bare_load(slow: str, clients: int, seconds: float) -> dict:
    bare = _bare_call(slow)
    await bare()

    async def bare_status() -> int:
        await bare()
        return 200

    # This process's CPU includes its load loop's: a little high for LiteLLM alone.
    return await _load(bare_status, clients, seconds, time.process_time)


async def run_database(name: str, database_env: dict[str, str], args: argparse.Namespace) -> dict:
    result: dict = {"load_before": load_average()}
    with fake_openai(0.0) as instant, fake_openai(args.delay) as slow:
        env = database_env | models_env(instant, slow)
        print(f"{name}: one process", file=sys.stderr)
        started = time.monotonic()
        with docsift_server(instant, env) as running:
            loader, doc = await _setup(running.url, running.api_key)
            await loader.aclose()
            first = Client(running.url, running.api_key, doc, "bench-llm")
            assert await first.classify() == 200
            result["startup"] = {
                "healthz_after_s": round(running.startup_s, 2),
                "readyz_after_s": round(running.ready_s, 2),
                "first_classification_after_s": round(time.monotonic() - started, 2),
            }
            await first.aclose()
            result["sequential"] = await sequential(running, instant, args.requests)
            if name == "postgres":  # the machine's floor for the contract's two round trips
                print(f"{name}: reference gateway", file=sys.stderr)
                client = Client(running.url, running.api_key, doc, "bench-llm")
                result["floor"] = await floor(
                    client.classify, instant, database_env["DOCSIFT_DATABASE_URL"], args.requests
                )
                await client.aclose()
            one = await server_load(running, args.clients, args.seconds)
        alone = await bare_load(slow, args.clients, args.seconds)
        result["load"] = {
            "model_delay_s": args.delay,
            "one_process": one,
            "bare_litellm_one_process": alone,
            "fraction_of_bare_litellm": round(one["throughput_rps"] / alone["throughput_rps"], 3),
            "docsift_own_cpu_ms_under_load": round(
                one["cpu_ms_per_request"] - alone["cpu_ms_per_request"], 1
            ),
        }
        if name == "postgres":
            print(f"{name}: two processes", file=sys.stderr)
            # Sized as the README says: 2 x (10 + 20) connections and the queue's, well under
            # PostgreSQL's default max_connections of 100 (the defaults, 2 x 60, are not).
            two_env = env | {
                "WEB_CONCURRENCY": "2",
                "DOCSIFT_DB_POOL_SIZE": "10",
                "DOCSIFT_DB_MAX_OVERFLOW": "20",
            }
            with docsift_server(instant, two_env) as running:
                two = await server_load(running, args.clients, args.seconds)
            result["load"]["two_processes"] = two
            result["load"]["two_process_speedup"] = round(
                two["throughput_rps"] / one["throughput_rps"], 3
            )
    result["load_after"] = load_average()
    return result


def fresh_postgres(server_url: str) -> str:
    """A new database on the server (dropped by nobody: bench databases are named bench_*)."""
    name = "bench_" + uuid.uuid4().hex[:10]
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres(url: str) -> None:
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_average() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument(
        "--postgres", default="postgresql://docsift:docsift@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    # As deployed (README): LiteLLM's default aiohttp transport, in the server and the bare
    # calls alike. The test suite's httpx switch, left in a shell, would slow both (and the
    # bare loops most: 60 instead of 137 req/s at 200 clients).
    os.environ.pop("DISABLE_AIOHTTP_TRANSPORT", None)
    result: dict = {
        "command": "python -m bench.overhead " + " ".join(sys.argv[1:]),
        "litellm_transport": "aiohttp",
        "event_loop": "uvloop",
    }
    # The bare calls (and the clients) on uvloop, the event loop uvicorn gives the server when it
    # is installed (uvicorn[standard]): each side on its fastest loop.
    if args.only != "postgres":
        result["sqlite"] = uvloop.run(run_database("sqlite", {}, args))
        write_result("overhead", result)  # kept should the PostgreSQL part fail
    if args.only != "sqlite":
        url = fresh_postgres(args.postgres)
        try:
            result["postgres"] = uvloop.run(
                run_database("postgres", {"DOCSIFT_DATABASE_URL": url}, args)
            )
        finally:
            drop_postgres(url)
    path = write_result("overhead", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
