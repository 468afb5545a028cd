"""The app shell: sidebar settings, the key sent, and errors shown instead of tracebacks."""

import httpx
import pytest
import respx
from streamlit.testing.v1 import AppTest

from tests.frontend import fakes
from tests.frontend.conftest import ENTRY, TIMEOUT

PAGES = [
    "classifiers",
    "live_test",
    "split",
    "batches",
    "evaluations",
    "documents",
    "history",
    "webhooks",
    "account",
]


def test_sidebar_defaults_come_from_the_environment(open_page, api: respx.MockRouter) -> None:
    at = open_page("classifiers")
    url, key = at.sidebar.text_input
    assert (url.value, key.value) == (fakes.BASE_URL, fakes.API_KEY)
    assert api.calls.last.request.headers["x-api-key"] == fakes.API_KEY


def test_a_key_typed_in_the_sidebar_is_used(open_page, api: respx.MockRouter) -> None:
    at = open_page("account")
    at.sidebar.text_input[1].set_value("dsk_other").run()
    assert not at.exception
    assert api.calls.last.request.headers["x-api-key"] == "dsk_other"


def test_without_a_key_pages_ask_for_one(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCSIFT_API_KEY")
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT).run()
    for name in PAGES:
        at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception
        assert "Enter the API URL and an API key" in at.info[0].value
    assert not api.calls


@pytest.mark.parametrize("name", PAGES)
def test_unreachable_api_is_a_message_not_a_traceback(
    open_page, api: respx.MockRouter, name: str
) -> None:
    api.routes.clear()
    api.route(host="docsift.test").mock(side_effect=httpx.ConnectError("connection refused"))
    at = open_page(name)
    assert at.error, f"{name} showed no error"
    assert "Cannot reach the API at http://docsift.test" in at.error[0].value


@pytest.mark.parametrize("name", PAGES)
def test_rejected_key_is_explained(open_page, api: respx.MockRouter, name: str) -> None:
    api.routes.clear()
    api.route(host="docsift.test").respond(
        403, json=fakes.error("invalid_api_key", "Unknown or revoked API key.")
    )
    at = open_page(name)
    message = at.error[0].value
    assert "The API key was rejected" in message
    assert "Unknown or revoked API key." in message
