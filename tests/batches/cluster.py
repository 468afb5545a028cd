"""Several DocSift processes on one PostgreSQL database, as production runs them: API processes
(uvicorn), queue workers (`docsift worker`) and a fake OpenAI-compatible model answering after a
delay, each its own process, all on 127.0.0.1. Used by the scale-out test and bench/batches.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.served import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL = "fake-llm"


def _wait(url: str, timeout: float, *, post: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if post:
                httpx.post(url, json={}, timeout=1)
                return
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


@dataclass
class Cluster:
    database_url: str
    workdir: Path
    apis: int = 3
    workers: int = 2
    worker_concurrency: int = 10
    model_delay: float = 0.2
    env_overrides: dict[str, str] = field(default_factory=dict)
    api_procs: list[subprocess.Popen] = field(default_factory=list)
    worker_procs: list[subprocess.Popen] = field(default_factory=list)
    model_proc: subprocess.Popen | None = None
    api_urls: list[str] = field(default_factory=list)
    model_url: str = ""

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DOCSIFT_DATABASE_URL": self.database_url,
            "DOCSIFT_STORAGE_DIR": str(self.workdir / "files"),
            "DOCSIFT_MODELS": json.dumps(
                [
                    {
                        "name": MODEL,
                        "litellm_model": "openai/fake",
                        "api_base": self.model_url,
                        "api_key": "none",
                        "credits_per_page": 1,
                    }
                ]
            ),
            "DOCSIFT_DEFAULT_MODEL": MODEL,
            "DOCSIFT_LOG_JSON": "false",
            "DOCSIFT_LOG_LEVEL": "WARNING",
            "DOCSIFT_OCR_ENABLED": "false",
            "DOCSIFT_WORKER_CONCURRENCY": str(self.worker_concurrency),
            **self.env_overrides,
        }

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=self.env(), stdout=log, stderr=log
        )

    def start(self, timeout: float = 180) -> "Cluster":
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.model_url = f"http://127.0.0.1:{port}/v1"
        self.model_proc = self._spawn(
            "model",
            ["-m", "tests.fake_openai", "--port", str(port), "--delay", str(self.model_delay)],
        )
        # Every process starts at once on the fresh database: migrations must serialize.
        for i in range(self.apis):
            port = free_port()
            self.api_urls.append(f"http://127.0.0.1:{port}")
            self.api_procs.append(
                self._spawn(
                    f"api{i}",
                    [
                        "-m",
                        "uvicorn",
                        "backend.main:app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                    ],
                )
            )
        for _ in range(self.workers):
            self.start_worker()
        _wait(f"{self.model_url}/chat/completions", timeout, post=True)
        for url in self.api_urls:
            _wait(f"{url}/healthz", timeout)
        return self

    def start_worker(self) -> subprocess.Popen:
        proc = self._spawn(f"worker{len(self.worker_procs)}", ["-m", "backend.cli", "worker"])
        self.worker_procs.append(proc)
        return proc

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "backend.cli", *args, "--json"],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)

    def stop(self) -> None:
        procs = [*self.api_procs, *self.worker_procs]
        if self.model_proc:
            procs.append(self.model_proc)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )
