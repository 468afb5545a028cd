"""Where a classify request's CPU goes: py-spy samples the server while one client sends
classify requests back to back to a fake model answering at once.

    pip install py-spy && python -m bench.profile_server [--seconds 24]

Writes bench/results/server_profile.json: requests per second, and for each part of the stack
the share of samples with a frame of it on the stack (inclusive, so shares overlap).
"""

import backend.offline  # noqa: F401, I001

import argparse
import asyncio
import collections
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import docsift_server, fake_openai, write_result
from bench.server import _body, _setup

PARTS = {
    "billing (holds, charges)": r"backend/billing/",
    "SQLAlchemy ORM/core": r"sqlalchemy/",
    "aiosqlite thread hop + sqlite": r"aiosqlite/",
    "LiteLLM": r"litellm/",
    "OpenAI SDK": r"openai/",
    "httpx/httpcore (to the model)": r"httpcore/",
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


def start_py_spy(out: Path, seconds: float) -> subprocess.Popen:
    """py-spy recording the newest uvicorn server process (the one just started)."""
    pid = subprocess.check_output(["pgrep", "-n", "-f", "uvicorn backend.main:app"]).split()[0]
    return subprocess.Popen(
        ["py-spy", "record", "-p", pid.decode(), "-r", "200", "-f", "raw", "-o", str(out)]
        + ["-d", str(int(seconds) + 1), "--nonblocking"]
    )


async def profile(seconds: float) -> dict:
    out = Path(tempfile.mkdtemp()) / "stacks.txt"
    with fake_openai(0.0) as base, docsift_server(base) as (url, key, _):
        client, doc = await _setup(url, key)
        for _ in range(20):
            await client.post("/v1/classify", json=_body(doc))
        spy = await asyncio.to_thread(start_py_spy, out, seconds)
        started, requests = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            response = await client.post("/v1/classify", json=_body(doc))
            assert response.status_code == 200, response.text
            requests += 1
        rate = requests / (time.perf_counter() - started)
        await asyncio.to_thread(spy.wait)
        await client.aclose()
    return {"requests_per_second_one_client": round(rate, 1), "inclusive_share": shares(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=24)
    args = parser.parse_args()
    result = asyncio.run(profile(args.seconds))
    result["command"] = f"python -m bench.profile_server --seconds {args.seconds:g}"
    write_result("server_profile", result)


if __name__ == "__main__":
    main()
