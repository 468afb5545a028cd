"""LiteLLM's own proxy beside a bare LiteLLM call and DocSift: what each adds to one completion.

    python -m bench.litellm_proxy [--rounds 300] [--warmup 50] [--venv /tmp/lproxy]
                                  [--postgres postgresql://docsift:docsift@127.0.0.1:5432/postgres]

One fake OpenAI-compatible model on 127.0.0.1 answering at once (its own process), and in front
of it: LiteLLM's proxy (`litellm --config ... --num_workers 1`, from its own virtualenv, with no
database and no master key: its least work per request; logs at ERROR), DocSift on SQLite and
DocSift on PostgreSQL (as `bench/overhead.py` starts them). Each round makes, in a random order,
one bare `litellm.acompletion` in this process with the prompt DocSift sends, the same
completion through the proxy (model `bench`, same messages and parameters, aiohttp keep-alive)
and one classification through each DocSift. Medians and p90s, each over the bare call's median;
beside them the proxy's own `x-litellm-overhead-duration-ms` (LiteLLM's time around the model
call inside the proxy, not its HTTP server) and DocSift's `x-docsift-overhead-ms`.

The proxy's virtualenv (`litellm[proxy]==1.110.2` does not resolve: it pins litellm-proxy,
litellm-proxy-extras and litellm-enterprise releases the index does not have; the proxy's code is
in the litellm wheel, so install it and the rest of its `proxy` extra):

    python -m venv /tmp/lproxy
    /tmp/lproxy/bin/pip install litellm==1.110.2
    /tmp/lproxy/bin/python -c "from importlib.metadata import requires; \\
        from packaging.requirements import Requirement as R; \\
        print(*(f'{r.name}{r.specifier}' for r in map(R, requires('litellm')) if r.marker \\
        and r.marker.evaluate({'extra': 'proxy'}) and not r.name.startswith('litellm-')), \\
        sep='\\n')" > /tmp/lproxy/proxy-extra.txt
    /tmp/lproxy/bin/pip install -r /tmp/lproxy/proxy-extra.txt

Writes bench/results/litellm_proxy.json.
"""

import backend.offline  # noqa: F401, I001

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import aiohttp
import uvloop

from bench.harness import (
    docsift_server,
    fake_openai,
    free_port,
    interleaved,
    percentile,
    wait_healthy,
    write_result,
)
from bench.overhead import Client, drop_postgres, fresh_postgres, models_env
from bench.server import BARE_PARAMETERS, _bare_call, _setup, bare_messages

CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {api_base}
      api_key: none
"""


@contextmanager
def litellm_proxy(venv: Path, model_base: str) -> Iterator[tuple[str, Path]]:
    """LiteLLM's proxy, one uvicorn worker, no database, no master key; yields (url, config)."""
    folder = Path(tempfile.mkdtemp(prefix="litellm-proxy-bench-"))
    config = folder / "config.yaml"
    config.write_text(CONFIG.format(api_base=model_base))
    dropped = {"DATABASE_URL", "LITELLM_MASTER_KEY", "PYTHONPATH", "DISABLE_AIOHTTP_TRANSPORT"}
    env = {k: v for k, v in os.environ.items() if k not in dropped} | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",  # uvicorn at ERROR too: no access line per request
        # 1.110 refuses to start without a master key unless told this is local development.
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    port = free_port()
    log = (folder / "proxy.log").open("ab")
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        cwd=folder,  # away from the repository's .env files
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/health/liveliness", timeout=300)
        yield url, config
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


class ProxyClient:
    """aiohttp keep-alive client for the proxy, keeping its overhead header of each completion."""

    def __init__(self, url: str, messages: list[dict[str, str]]) -> None:
        self.url = url + "/v1/chat/completions"
        self.body = {"model": "bench", "messages": messages} | BARE_PARAMETERS
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
        )
        self.overhead_ms: list[float] = []
        self.version = ""

    async def complete(self) -> int:
        async with self.session.post(self.url, json=self.body) as response:
            await response.read()
            if response.status == 200:
                self.overhead_ms.append(float(response.headers["x-litellm-overhead-duration-ms"]))
                self.version = response.headers.get("x-litellm-version", "")
            return response.status

    async def check(self) -> None:
        """One completion, failing loudly unless it came back with its logprobs."""
        async with self.session.post(self.url, json=self.body) as response:
            reply = await response.json()
        assert reply["choices"][0]["logprobs"]["content"], reply

    async def aclose(self) -> None:
        await self.session.close()


def _stats(seconds: list[float], bare_median_ms: float) -> dict:
    median_ms = statistics.median(seconds) * 1000
    return {
        "median_ms": round(median_ms, 2),
        "p90_ms": round(percentile(seconds, 90) * 1000, 2),
        "p99_ms": round(percentile(seconds, 99) * 1000, 2),
        "ratio_to_bare": round(median_ms / bare_median_ms, 3),
        "added_to_bare_median_ms": round(median_ms - bare_median_ms, 2),
    }


def _header(values: list[float]) -> dict:
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
    }


async def measure(args: argparse.Namespace) -> dict:
    result: dict = {"loadavg_start": os.getloadavg()}
    with fake_openai(0.0) as instant:
        bare = _bare_call(instant)
        env = models_env(instant, instant)  # as bench/overhead.py, `bench-llm` answering at once
        postgres_url = fresh_postgres(args.postgres)
        try:
            with (
                litellm_proxy(Path(args.venv), instant) as (proxy_url, config),
                docsift_server(instant, env) as sqlite,
                docsift_server(instant, env | {"DOCSIFT_DATABASE_URL": postgres_url}) as postgres,
            ):
                result["proxy_config"] = config.read_text()
                proxy = ProxyClient(proxy_url, bare_messages())
                clients = {}
                for name, running in (("docsift_sqlite", sqlite), ("docsift_postgres", postgres)):
                    loader, doc = await _setup(running.url, running.api_key)
                    await loader.aclose()
                    clients[name] = Client(running.url, running.api_key, doc, "bench-llm")

                async def bare_status() -> int:
                    await bare()
                    return 200

                calls: dict[str, Callable[[], Awaitable[int]]] = {
                    "bare_litellm": bare_status,
                    "litellm_proxy": proxy.complete,
                    **{name: client.classify for name, client in clients.items()},
                }
                await proxy.check()
                await interleaved(calls, args.warmup)
                proxy.overhead_ms.clear()
                for client in clients.values():
                    client.overhead_ms.clear()
                result["loadavg_before"] = os.getloadavg()
                times = await interleaved(calls, args.rounds)
                result["loadavg_after"] = os.getloadavg()
                await proxy.aclose()
                for client in clients.values():
                    await client.aclose()
        finally:
            drop_postgres(postgres_url)
    bare_ms = statistics.median(times["bare_litellm"]) * 1000
    result["latency"] = {name: _stats(values, bare_ms) for name, values in times.items()}
    result["litellm_proxy_overhead_header"] = _header(proxy.overhead_ms)
    result["docsift_overhead_header"] = {
        name: _header(client.overhead_ms) for name, client in clients.items()
    }
    result["litellm_version"] = {"bare": version("litellm"), "proxy": proxy.version}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--venv", default="/tmp/lproxy", help="the proxy's virtualenv")
    parser.add_argument(
        "--postgres", default="postgresql://docsift:docsift@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    # As bench/overhead.py: LiteLLM's default aiohttp transport, in every process.
    os.environ.pop("DISABLE_AIOHTTP_TRANSPORT", None)
    result: dict = {
        "command": "python -m bench.litellm_proxy " + " ".join(sys.argv[1:]),
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "event_loop": "uvloop",
    }
    result |= uvloop.run(measure(args))
    path = write_result("litellm_proxy", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
