"""The console in a real browser: backend and Streamlit running, headless Debian Chromium driven by
Playwright. Every page renders without an exception; a live test shows a label and its scores; a
split, a batch in progress and a document viewer render too. Screenshots land in
test-artifacts/screenshots/, and those of the pages added by issue 28 in frontend/screenshots/
(the README shows them)."""

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.backends.fake import FunctionBackend
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
    "split": "split",
    "batches": "batches",
    "evaluations": "evaluations",
    "documents": "documents",
    "history": "history",
    "webhooks": "webhooks",
    "account": "account",
}
NEW_PAGES = {"split", "batches", "documents", "history", "webhooks"}
SHOTS = REPO_ROOT / "frontend" / "screenshots"
BUNDLE = [
    "INVOICE 2024-117\nBill to: Northwind Traders\nAmount due: 1,250.00 USD\nPayment due in 30 days",
    "Invoice 2024-117, page 2\nLine items: widgets 40 x 25.00\nTotal due 1,250.00 USD",
    "PURCHASE ORDER PO-5521\nVendor: Acme Supplies\nShip to: Northwind Traders\nQuantity ordered: 40",
    "Purchase order PO-5521, terms\nDeliver within 14 days of this order",
]


class SlowBackend(FunctionBackend):
    """A model that takes seconds per page, so a batch is seen while it runs."""

    def __init__(self) -> None:
        super().__init__(model_names=("slow",))

    async def classify(self, request):  # noqa: ANN001, ANN201
        await asyncio.sleep(20)
        return await super().classify(request)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (bash .ci/setup --test installs it)")
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'b.db'}"
    key = asyncio.run(_accounts(url, 1))[0]
    settings = make_settings(url, folder, default_model="local")
    app = create_app(settings, backends=BackendRegistry([LocalBackend(settings), SlowBackend()]))
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
    SHOTS.mkdir(parents=True, exist_ok=True)
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


def _open(browser, url, height=1000):
    # Streamlit scrolls inside its own container, so a full-page shot shows only the viewport.
    page = browser.new_page(viewport={"width": 1400, "height": height})
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
    assert page.get_by_text("Deploy", exact=True).count() == 0  # a product's toolbar
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.close()


def _upload(api: str, key: str, name: str, pages: list[str]) -> dict:
    reply = httpx.post(
        f"{api}/v1/documents",
        headers={"x-api-key": key},
        files={"file": (name, text_pdf(pages), "application/pdf")},
        timeout=60,
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


def _settle(page, errors) -> None:  # noqa: ANN001
    assert page.locator("[data-testid='stException']").count() == 0
    assert not errors, errors


def test_document_viewer_shows_a_page_and_its_text(stack, browser):
    base, api, key = stack
    document = _upload(api, key, "northwind invoice.pdf", BUNDLE[:2])
    page, errors = _open(
        browser, f"{base}/documents?document={document['document_id']}", height=1600
    )
    page.wait_for_selector("text=Extracted text", timeout=30_000)
    page.wait_for_timeout(1500)
    assert page.locator("textarea").first.input_value().startswith("INVOICE 2024-117")
    assert page.locator("[data-testid='stImage'] img").count() >= 1
    _settle(page, errors)
    page.screenshot(path=str(SHOTS / "documents.png"), full_page=True)
    page.close()


def test_split_draws_its_segments(stack, browser, tmp_path):
    base, _, _ = stack
    bundle = tmp_path / "mailroom scan.pdf"
    bundle.write_bytes(text_pdf(BUNDLE))
    page, errors = _open(browser, f"{base}/split", height=2000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bundle))
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Split", exact=True).click()
    page.wait_for_selector("text=document(s) found", timeout=90_000)
    page.wait_for_timeout(2500)
    assert page.locator("[data-testid='stImage'] img").count() >= 4  # every page, drawn over
    _settle(page, errors)
    page.screenshot(path=str(SHOTS / "split.png"), full_page=True)
    page.close()


def test_a_batch_in_progress(stack, browser):
    base, api, key = stack
    ids = [_upload(api, key, f"letter {n}.pdf", [BUNDLE[n]])["document_id"] for n in range(3)]
    schema = [
        {"label": "invoice", "description": "A bill"},
        {"label": "purchase_order", "description": "An order"},
    ]
    started = httpx.post(
        f"{api}/v1/batches",
        headers={"x-api-key": key},
        json={"document_ids": ids, "classification_schema": schema, "query_model": "slow"},
        timeout=30,
    )
    assert started.status_code == 202, started.text
    page, errors = _open(browser, f"{base}/batches")
    page.wait_for_selector("text=/[0-2]\\/3 items/", timeout=30_000)
    assert page.locator("[data-testid='stProgress']").count() >= 1
    status = httpx.get(
        f"{api}/v1/batches/{started.json()['batch_id']}", headers={"x-api-key": key}
    ).json()
    assert status["status"] != "completed"  # seen while it runs
    _settle(page, errors)
    page.screenshot(path=str(SHOTS / "batches.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("name", ["history", "webhooks"])
def test_new_pages_with_records(stack, browser, name):
    base, _, _ = stack
    page, errors = _open(browser, f"{base}/{name}")
    page.wait_for_timeout(1500)
    _settle(page, errors)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
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
