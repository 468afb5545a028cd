"""The console under AppTest, against an HTTP API mocked by respx (no backend, no sockets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import respx
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.frontend import fakes

ENTRY = Path(__file__).resolve().parents[2] / "frontend" / "streamlit_app.py"
DEFAULT_PAGE = "classifiers"
TIMEOUT = 30  # the first run imports pandas and altair


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    """A mocked DocSift API with empty defaults; tests replace the routes they care about."""
    monkeypatch.setenv("DOCSIFT_API_URL", fakes.BASE_URL)
    monkeypatch.setenv("DOCSIFT_API_KEY", fakes.API_KEY)
    st.cache_resource.clear()
    st.cache_data.clear()
    with respx.mock(base_url=fakes.BASE_URL, assert_all_called=False) as router:
        router.get("/healthz").respond(json={"status": "ok"})
        router.get("/v1/models").respond(json=fakes.models())
        router.get("/v1/classifiers").respond(json=fakes.page([]))
        router.get("/v1/classifications").respond(json=fakes.page([]))
        router.get("/v1/evaluations").respond(json=fakes.page([]))
        router.get("/v1/documents").respond(json=fakes.page([]))
        router.get("/v1/account").respond(json=fakes.account())
        router.get("/v1/account/ledger").respond(json=fakes.page([]))
        router.get("/v1/account/keys").respond(json={"items": []})
        router.get("/v1/limits").respond(json=fakes.limits())
        router.post("/v1/evaluations/estimate").respond(json=fakes.estimate())
        router.get("/v1/batches").respond(json=fakes.page([]))
        router.get("/v1/webhooks").respond(json=fakes.webhook_config())
        router.get("/v1/webhooks/deliveries").respond(json=fakes.page([]))
        router.get(path__regex=r"^/v1/documents/[^/]+/pages/\d+/image$").respond(
            content=fakes.png_bytes(), headers={"content-type": "image/png"}
        )
        yield router


@pytest.fixture
def open_page(api: respx.MockRouter) -> Callable[[str], AppTest]:
    """Run the app from its entry script and switch to a page of app_pages/."""

    def _open(name: str) -> AppTest:
        at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT).run()
        if name != DEFAULT_PAGE:
            at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return _open
