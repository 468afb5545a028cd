"""The process entry point: live at once, ready once the app and its model path have loaded."""

import asyncio
import subprocess
import sys
import threading
import time

import httpx
import pytest

from backend.asgi import BootingApp
from backend.config import Settings
from backend.runtime import check_web_concurrency
from bench.harness import REPO, free_port


class Lifespan:
    """Drives an ASGI app's lifespan as a server does."""

    def __init__(self, app: BootingApp) -> None:
        self.app = app
        self.to_app: asyncio.Queue = asyncio.Queue()
        self.from_app: asyncio.Queue = asyncio.Queue()

    async def start(self) -> None:
        self.task = asyncio.create_task(
            self.app({"type": "lifespan", "state": {}}, self.to_app.get, self.from_app.put)
        )
        await self.to_app.put({"type": "lifespan.startup"})
        assert (await self.from_app.get())["type"] == "lifespan.startup.complete"

    async def stop(self) -> None:
        await self.to_app.put({"type": "lifespan.shutdown"})
        assert (await self.from_app.get())["type"] == "lifespan.shutdown.complete"
        await self.task


def slow_app(release: threading.Event, events: list[str]):  # noqa: ANN201
    """A loader that blocks (as the real import does) until `release`, then an app with a
    lifespan that records its start and stop."""

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                events.append(kind)
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    def loader():  # noqa: ANN202
        assert release.wait(10)
        return app

    return loader


async def test_live_at_once_ready_when_loaded_and_requests_wait_for_the_app() -> None:
    release, events = threading.Event(), []
    boot = BootingApp(slow_app(release, events))
    lifespan = Lifespan(boot)
    await lifespan.start()  # returns before the app has loaded
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=boot), base_url="http://t")
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    starting = await client.get("/readyz")
    assert starting.status_code == 503 and starting.json()["app"] is False
    waiting = asyncio.create_task(client.get("/v1/anything"))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # held until the app is there, not refused
    release.set()
    answered = await waiting
    assert answered.status_code == 200 and answered.text == "inner"
    assert events == ["startup"]
    await lifespan.stop()
    assert events == ["startup", "shutdown"]
    await client.aclose()


def test_uvicorn_answers_healthz_long_before_the_app_is_ready(tmp_path) -> None:  # noqa: ANN001
    """The real entry point under uvicorn: /healthz answers while the app is still loading (a
    fresh process imports FastAPI, SQLAlchemy and the routers for seconds), /readyz later."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DOCSIFT_DATABASE_URL": f"sqlite:///{tmp_path / 'boot.db'}",
        "DOCSIFT_STORAGE_DIR": str(tmp_path / "files"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.asgi:app", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        live = ready = None
        while time.monotonic() - started < 120 and ready is None:
            try:
                if live is None and httpx.get(f"{url}/healthz").status_code == 200:
                    live = time.monotonic()
                    assert httpx.get(f"{url}/readyz").status_code == 503
                if live is not None and httpx.get(f"{url}/readyz").status_code == 200:
                    ready = time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        assert live is not None and ready is not None
        assert httpx.get(f"{url}/readyz").json()["model_path"] is True
        assert httpx.get(f"{url}/v1/account").status_code == 403  # the real app answers
        # Once ready, the start-up heap is left out of garbage collection (asgi.py says why).
        deadline = time.monotonic() + 10
        while "start-up heap frozen" not in (tmp_path / "server.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)


def test_several_api_processes_need_postgres() -> None:
    sqlite = Settings(_env_file=None, database_url="sqlite:///x.db")
    postgres = Settings(_env_file=None, database_url="postgresql://u:p@h/db")
    with pytest.raises(RuntimeError, match="needs PostgreSQL"):
        check_web_concurrency(sqlite, {"WEB_CONCURRENCY": "2"})
    check_web_concurrency(sqlite, {"WEB_CONCURRENCY": "1"})
    check_web_concurrency(sqlite, {})
    check_web_concurrency(postgres, {"WEB_CONCURRENCY": "4"})
