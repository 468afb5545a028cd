"""The Review page in real Chromium: a pending result shows its page and scores, one click
accepts it, and the API records the decision (the queue moves on)."""

import httpx
import pytest

from tests.browser.test_console_in_chromium import ARTIFACTS, _open, browser, stack  # noqa: F401
from tests.conftest import REPO_ROOT
from tests.fixtures.documents import text_pdf

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCHEMA = [
    {"label": "invoice", "description": "A bill asking a customer to pay"},
    {"label": "contract", "description": "An agreement between parties"},
    {"label": "other", "description": "Anything else"},
]


def pending_results(api: str, key: str, count: int) -> list[dict]:
    """Results of a classifier whose threshold sends everything to review."""
    with httpx.Client(base_url=api, headers={"x-api-key": key}, timeout=120) as client:
        classifier = client.post(
            "/v1/classifiers",
            json={
                "name": "Incoming mail",
                "classification_schema": SCHEMA,
                "query_model": "local",
                "review_policy": {"threshold": 1.0},
            },
        ).json()
        results = []
        for i in range(count):
            pdf = text_pdf([f"INVOICE {1000 + i}\nBill to: Northwind\nAmount due: {i + 5}0.00 USD"])
            doc = client.post("/v1/documents", files={"file": (f"inv{i}.pdf", pdf)}).json()
            result = client.post(
                f"/v1/classifiers/{classifier['classifier_id']}/run",
                json={"document_id": doc["document_id"]},
            ).json()
            assert result["review_status"] == "pending", result
            results.append(result)
    return results


def test_review_page_accepts_with_one_click(stack, browser):  # noqa: F811
    base, api, key = stack
    results = pending_results(api, key, 2)
    page, errors = _open(browser, f"{base}/review")
    try:
        page.wait_for_selector("[data-testid='stImage'] img", timeout=90_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "review_failed.png"), full_page=True)
        raise
    # The page renders in steps (on a busy machine slowly): wait for its last widgets.
    page.get_by_role("button", name="other").wait_for(timeout=90_000)
    page.get_by_role("radio", checked=True).wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
    assert "awaiting review" in page.inner_text("[data-testid='stMain']")
    # The suggested label is preselected.
    checked = page.get_by_role("radio", checked=True)
    assert checked.count() == 1
    screenshots = REPO_ROOT / "frontend" / "screenshots"
    page.screenshot(path=str(screenshots / "review.png"), full_page=True)
    page.get_by_role("button", name="Accept").click()
    page.wait_for_selector("text=Confirmed", timeout=30_000)
    with httpx.Client(base_url=api, headers={"x-api-key": key}) as client:
        first = client.get(f"/v1/reviews/{results[0]['request_id']}").json()
        queue = client.get("/v1/reviews").json()
    assert first["review_status"] == "reviewed"
    assert first["decision"]["label"] == results[0]["classification"]
    assert queue["pending"] == 1 and queue["items"][0]["request_id"] == results[1]["request_id"]
    assert page.locator("[data-testid='stException']").count() == 0 and not errors
    page.close()
