"""Start the pieces a benchmark needs, on 127.0.0.1 only: a fake OpenAI server and DocSift."""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout: float = 120) -> float:
    """Seconds until GET url answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def fake_openai(delay: float = 0.0):
    """A fake OpenAI-compatible server in its own process (so it does not share our GIL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--delay", str(delay)],
        cwd=REPO,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(f"{base}/chat/completions", json={}, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


class Running(NamedTuple):
    url: str
    api_key: str
    startup_s: float  # process start to /healthz answering
    pid: int
    ready_s: float  # process start to /readyz answering 200 (app and model path loaded)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def docsift_server(model_base: str | None = None, extra_env: dict[str, str] | None = None):
    """DocSift under uvicorn (one process) on a fresh SQLite database, unless extra_env names
    another DOCSIFT_DATABASE_URL; yields Running(url, api_key, startup_s, pid)."""
    folder = Path(tempfile.mkdtemp(prefix="docsift-bench-"))
    env = {
        **os.environ,
        "DOCSIFT_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "DOCSIFT_STORAGE_DIR": str(folder / "files"),
        "DOCSIFT_RATE_LIMIT_PER_MINUTE": "0",  # one key sends everything: no per-key limit
        **(extra_env or {}),
    }
    if model_base and "DOCSIFT_MODELS" not in (extra_env or {}):
        env["DOCSIFT_MODELS"] = json.dumps(
            [
                {
                    "name": "bench-llm",
                    "litellm_model": "openai/bench",
                    "api_base": model_base,
                    "api_key": "none",
                }
            ]
        )
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "accounts",
            "create",
            "--name",
            "bench",
            "--credits",
            "100000000",
            "--json",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    port = free_port()
    started = time.monotonic()
    log = (folder / "server.log").open("ab")  # the server's logs, at its default level (INFO)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",  # as the Procfile runs it: DocSift logs requests itself (INFO)
            "--backlog",
            "4096",
            # With WEB_CONCURRENCY workers uvicorn kills one that does not answer its ping in 5 s,
            # which a worker still loading the app on a busy machine may not (Procfile: the same).
            "--timeout-worker-healthcheck",
            "60",
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/healthz")
        live = time.monotonic() - started
        wait_healthy(f"{url}/readyz", timeout=600)
        yield Running(url, api_key, live, proc.pid, time.monotonic() - started)
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


async def interleaved(
    targets: dict[str, Callable[[], Awaitable[int]]],
    rounds: int,
    order: random.Random | None = None,
) -> dict[str, list[float]]:
    """Each round every target once, in a new random order (so machine noise and what ran just
    before hit them alike): seconds per call, by name. Every call must answer 200."""
    order = order or random.Random()
    names = list(targets)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        order.shuffle(names)
        for name in names:
            started = time.perf_counter()
            status = await targets[name]()
            times[name].append(time.perf_counter() - started)
            assert status == 200, f"{name}: HTTP {status}"
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def write_result(name: str, data: dict) -> Path:
    path = REPO / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
