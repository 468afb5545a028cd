"""The API process is SIGKILLed while its OCR workers read a scan: within 10 s no worker of it
is left (they watch their parent; LibreOffice's case is in test_office_converter.py)."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil

from backend.accounts.service import create_account
from backend.db import create_engine, create_sessionmaker
from backend.migrate import upgrade
from tests.conftest import REPO_ROOT
from tests.documents.intake import alive
from tests.fixtures.documents import scanned_pdf
from tests.served import free_port


async def _account(url: str) -> str:
    engine = create_engine(url)
    await upgrade(engine)
    async with create_sessionmaker(engine)() as session:
        _, key = await create_account(session, name="k", credits=0, key_prefix="dsk_")
        await session.commit()
    await engine.dispose()
    return key


def test_sigkill_of_the_api_during_ocr_leaves_no_worker(database_url, tmp_path):
    key = asyncio.run(_account(database_url))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DOCSIFT_DATABASE_URL": database_url,
        "DOCSIFT_STORAGE_DIR": str(tmp_path / "files"),
        "DOCSIFT_OCR_WORKERS": "2",
        "DOCSIFT_EMBEDDED_WORKER": "true",
        "DOCSIFT_RATE_LIMIT_PER_MINUTE": "0",
        "DOCSIFT_MAX_UPLOAD_MB": "200",  # scans at 150 dpi are ~2-5 MB a page
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert api.poll() is None and time.monotonic() < deadline, "the API did not start"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        scan = scanned_pdf(
            [f"Scanned page {n} of a long delivery note" for n in range(4)]
        )  # < the 20 MB limit

        answered: dict[str, httpx.Response] = {}

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
                answered["upload"] = httpx.post(
                    f"{base}/v1/documents",
                    files={"file": ("scan.pdf", scan)},
                    headers={"x-api-key": key},
                    timeout=120,
                )

        threading.Thread(target=upload, daemon=True).start()
        deadline = time.monotonic() + 90
        spawned: list[psutil.Process] = []
        while len(spawned) < 2:  # the OCR pool's two workers, started by the upload's scan
            assert time.monotonic() < deadline, f"no OCR worker started: {answered}"
            children = psutil.Process(api.pid).children(recursive=True)
            with contextlib.suppress(psutil.Error):
                spawned = [p for p in children if "multiprocessing.spawn" in " ".join(p.cmdline())]
            time.sleep(0.05)
        time.sleep(0.5)  # OCR under way in them
        workers = [p.pid for p in psutil.Process(api.pid).children(recursive=True)]
        api.send_signal(signal.SIGKILL)
        api.wait()
        deadline = time.monotonic() + 10
        while [pid for pid in workers if alive(pid)]:
            assert time.monotonic() < deadline, "OCR workers outlived the API process"
            time.sleep(0.1)
    finally:
        api.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
