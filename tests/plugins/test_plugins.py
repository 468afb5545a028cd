"""A third party's backend plugs in through entry points alone (SPEC §6).

The example package in tests/plugins/docsift-keyword-backend is installed like any third party's
(`pip install -e`, done by `.ci/setup --test`). The app here is built the way production builds it:
`create_app` with no backends, so the registry comes from the `docsift.backends` entry points.
"""

from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import httpx
import pytest

from backend.backends.registry import ENTRY_POINT_GROUP, BackendRegistry
from backend.config import Settings
from backend.main import create_app
from tests.conftest import REPO_ROOT, Harness
from tests.fixtures.documents import text_pdf

PLUGIN_MODEL = "keyword-v1"
SCHEMA = [
    {"label": "invoice", "description": "A bill: payment due for goods, amount, total"},
    {"label": "contract", "description": "An agreement signed between parties, with terms"},
]
INVOICE = ["Invoice 1042. Payment due: total amount 1,250 EUR.", "Goods delivered. Amount due."]


@pytest.fixture(scope="module", autouse=True)
def plugin_installed() -> None:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if "keyword" not in names:
        pytest.fail(
            "The example plugin is not installed: "
            "pip install -e tests/plugins/docsift-keyword-backend (bash .ci/setup --test does it)"
        )


@pytest.fixture
async def plugged(settings: Settings) -> AsyncIterator[Harness]:
    """The production wiring: no backends passed, so the lifespan reads the entry points."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://docsift.test") as client:
            yield Harness(app=app, client=client, settings=settings)


def test_docsift_code_never_names_the_plugin():
    sources = (REPO_ROOT / "backend").rglob("*.py")
    assert not [
        p for p in sources if PLUGIN_MODEL in p.read_text() or "keyword_backend" in p.read_text()
    ]


def test_the_registry_finds_the_plugin_through_entry_points(settings: Settings):
    registry = BackendRegistry.from_entry_points(settings)
    backend, info = registry.resolve(PLUGIN_MODEL)
    assert type(backend).__module__ == "docsift_keyword_backend"
    assert (info.backend, info.credits_per_page) == ("keyword", 2)


async def test_the_plugin_model_is_listed(plugged: Harness):
    tenant = await plugged.tenant()
    models = (await plugged.client.get("/v1/models", headers=tenant.headers)).json()["models"]
    listed = {m["name"]: m for m in models}
    assert listed[PLUGIN_MODEL] == {
        "name": PLUGIN_MODEL,
        "backend": "keyword",
        "credits_per_page": 2,
        "confidence_method": "keyword_softmax",
        "trainable": False,
        "description": "Example plugin",
        # What a plugin that declares no more gets: usable, text only, one label, no debiasing.
        "available": True,
        "unavailable_reason": None,
        "supports_multi_label": False,
        "debias_methods": [],
        "debias_costs": {},
        "supports_vision": False,
        "credits_per_image_page": None,
        "default_input_mode": "text",
    }


async def test_the_plugin_classifies_through_the_api_and_is_charged(plugged: Harness):
    tenant = await plugged.tenant(credits=100)
    client, headers = plugged.client, tenant.headers
    uploaded = await client.post(
        "/v1/documents", files={"file": ("bill.pdf", text_pdf(INVOICE))}, headers=headers
    )
    assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["document_id"]

    response = await client.post(
        "/v1/classify",
        json={
            "document_id": document_id,
            "classification_schema": SCHEMA,
            "query_model": PLUGIN_MODEL,
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    scores = body["confidence_scores"]
    assert body["classification"] == "invoice" and scores["invoice"] > scores["contract"]
    assert abs(sum(scores.values()) - 1) < 1e-3
    assert body["model"] == PLUGIN_MODEL and body["confidence_method"] == "keyword_softmax"
    assert (body["num_pages"], body["credits_used"]) == (2, 4)  # 2 credits per page

    account = (await client.get("/v1/account", headers=headers)).json()
    assert account["balance"] == 96
    ledger = (await client.get("/v1/account/ledger", headers=headers)).json()["items"]
    debits = [e for e in ledger if e["kind"] == "debit"]
    assert [(e["amount"], e["request_id"], e["model"]) for e in debits] == [
        (-4, body["request_id"], PLUGIN_MODEL)
    ]


async def test_the_plugin_is_charged_only_for_the_pages_used(plugged: Harness):
    tenant = await plugged.tenant(credits=100)
    client, headers = plugged.client, tenant.headers
    uploaded = await client.post(
        "/v1/documents", files={"file": ("bill.pdf", text_pdf(INVOICE))}, headers=headers
    )
    response = await client.post(
        "/v1/classify",
        json={
            "document_id": uploaded.json()["document_id"],
            "classification_schema": SCHEMA,
            "query_model": PLUGIN_MODEL,
            "page_range": "2",
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["num_pages"], response.json()["credits_used"]) == (1, 2)
    assert (await client.get("/v1/account", headers=headers)).json()["balance"] == 98
