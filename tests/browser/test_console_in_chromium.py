"""The console in a real browser: backend and Streamlit running, headless Debian Chromium driven by
Playwright. Every page renders without an exception; a live test shows a label and its scores.
Screenshots land in test-artifacts/screenshots/ (the README shows them)."""

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.backends.local import LocalBackend
from backend.backends.registry import BackendRegistry
from backend.main import create_app
from tests.conftest import REPO_ROOT, make_settings
from tests.fixtures.documents import text_pdf
from tests.security.conftest import _accounts
from tests.served import free_port, serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "screenshots"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PAGES = {
    "classifiers": "",
    "live_test": "live_test",
    "evaluations": "evaluations",
    "account": "account",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (bash .ci/setup --test installs it)")
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'b.db'}"
    key = asyncio.run(_accounts(url, 1))[0]
    settings = make_settings(url, folder, default_model="local")
    app = create_app(settings, backends=BackendRegistry([LocalBackend(settings)]))
    served, console_port = serve_in_thread(app), free_port()
    api = served.url
    env = {**os.environ, "DOCSIFT_API_URL": api, "DOCSIFT_API_KEY": key}
    console = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "frontend/streamlit_app.py",
            "--server.port",
            str(console_port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{console_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/_stcore/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield base, api, key
    console.terminate()
    console.wait(10)
    served.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield instance
        instance.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("[data-testid='stApp']", timeout=30_000)
    page.wait_for_timeout(2500)  # Streamlit renders after the websocket connects
    return page, errors


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_without_an_exception(stack, browser, name):
    base, _, _ = stack
    page, errors = _open(browser, f"{base}/{PAGES[name]}")
    assert page.locator("[data-testid='stException']").count() == 0
    assert not errors, errors
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.close()


def test_live_test_shows_a_label_and_scores(stack, browser, tmp_path):
    base, _, _ = stack
    document = tmp_path / "invoice.pdf"
    document.write_bytes(
        text_pdf(
            [
                "INVOICE 2024-117\nBill to: Northwind Traders\nAmount due: 1,250.00 USD\nPayment due in 30 days"
            ]
        )
    )
    page, errors = _open(browser, f"{base}/live_test")
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(document))
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Classify").click()
    page.wait_for_selector("[data-testid='stMetricValue']", timeout=60_000)
    page.wait_for_timeout(1500)
    metrics = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert metrics and metrics[0].strip() == "invoice", metrics
    assert page.locator("[data-testid='stVegaLiteChart'], .vega-embed").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0 and not errors
    page.screenshot(path=str(ARTIFACTS / "live_test_result.png"), full_page=True)
    page.close()
