"""Where a classify request's CPU goes: py-spy samples the server while clients send classify
requests back to back to a fake model (one client, answering at once, by default).

    pip install py-spy && python -m bench.profile_server [--seconds 24] [--clients 200 --delay 1]

PYSPY_BLOCKING=1 samples with the process paused (whole stacks, no sampling errors, slower).
Writes bench/results/server_profile.json: requests per second, and for each part of the stack
the share of samples with a frame of it on the stack (inclusive, so shares overlap).
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import collections
import os
import re
import subprocess
import tempfile
from pathlib import Path

from bench.harness import docsift_server, fake_openai, write_result
from bench.server import _body, _load, _setup

PARTS = {
    "billing (holds, charges)": r"backend/billing/",
    "SQLAlchemy ORM/core": r"sqlalchemy/",
    "aiosqlite thread hop + sqlite": r"aiosqlite/",
    "LiteLLM": r"litellm/",
    "OpenAI SDK": r"openai/",
    "HTTP to the model (aiohttp, httpcore)": r"(aiohttp|httpcore)/",
    "FastAPI/Starlette routing, validation": r"(fastapi|starlette)/",
    "pydantic": r"pydantic",
    "documents (page reads)": r"backend/documents/",
    "prompt rendering + token budget": r"backend/backends/llm/(prompts|budget)",
    "logging": r"logging/",
}


def shares(stacks: Path) -> dict[str, float]:
    total, inclusive = 0, collections.Counter()
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames, n = stack.split(";"), int(count)
        if frames[-1].startswith(("_connection_worker_thread", "_worker (concurrent")):
            continue  # idle worker threads waiting for work
        total += n
        for part, pattern in PARTS.items():
            if any(re.search(pattern, frame) for frame in frames):
                inclusive[part] += n
    return {part: round(inclusive[part] / total, 3) for part in PARTS} | {"samples": total}


def start_py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen:
    """py-spy recording the server process."""
    return subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
        + ["-d", str(int(seconds) + 1)]
        + ([] if os.environ.get("PYSPY_BLOCKING") else ["--nonblocking"])
    )


async def profile(seconds: float, clients: int, delay: float, keep: Path | None) -> dict:
    out = keep or Path(tempfile.mkdtemp()) / "stacks.txt"
    with fake_openai(delay) as base, docsift_server(base) as (url, key, _, pid, _ready):
        client, doc = await _setup(url, key)
        for _ in range(20):
            await client.post("/v1/classify", json=_body(doc))

        async def classify() -> int:
            return (await client.post("/v1/classify", json=_body(doc))).status_code

        spy = await asyncio.to_thread(start_py_spy, pid, out, seconds)
        load = await _load(classify, clients, seconds)
        await asyncio.to_thread(spy.wait)
        await client.aclose()
    return {
        "clients": clients,
        "model_delay_s": delay,
        "requests_per_second": load["throughput_rps"],
        "errors": load["errors"],
        "inclusive_share": shares(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=24)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stacks", type=Path, help="also keep py-spy's raw stacks here")
    args = parser.parse_args()
    result = asyncio.run(profile(args.seconds, args.clients, args.delay, args.stacks))
    result["command"] = (
        f"python -m bench.profile_server --seconds {args.seconds:g}"
        f" --clients {args.clients} --delay {args.delay:g}"
    )
    name = "server_profile" if args.clients == 1 else "server_profile_concurrent"
    write_result(name, result)


if __name__ == "__main__":
    main()
