"""DocSift's MCP tools, driven by the `mcp` package's own client over real HTTP (uvicorn, loopback)."""

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from backend.backends.base import Backend, ClassifyRequest
from backend.backends.fake import FunctionBackend
from backend.backends.registry import BackendRegistry
from backend.config import Settings
from backend.errors import InvalidRequest, PayloadTooLarge
from backend.main import create_app
from backend.mcp_tools import decode_upload
from tests.conftest import Harness, Tenant
from tests.fixtures.documents import text_pdf

SCHEMA = [
    {"label": "invoice", "description": "A document requesting payment for goods or services"},
    {"label": "contract", "description": "A legally binding agreement between parties"},
]
INVOICE = ["INVOICE 1042\nAmount due: 1,250.00 EUR", "Payment terms: 30 days\nThank you"]


@asynccontextmanager
async def serve(settings: Settings, backends: list[Backend]) -> AsyncIterator[Harness]:
    """The app behind a real uvicorn server on a free loopback port, in this test's event loop."""
    app = create_app(settings, backends=BackendRegistry(backends))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():  # start-up failed: surface its exception
            task.result()
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield Harness(app=app, client=client, settings=settings)
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def served(settings: Settings, fake_backend: FunctionBackend) -> AsyncIterator[Harness]:
    async with serve(settings, [fake_backend]) as harness:
        yield harness


@asynccontextmanager
async def mcp_session(harness: Harness, api_key: str, mode: str = "auto") -> AsyncIterator[Client]:
    """An MCP client session to /mcp that sends the key on every request."""
    url = str(harness.client.base_url.join("/mcp"))
    async with (
        # httpx2's default 5 s would fail a call on a loaded CI machine; the SDK's own is 30 s.
        httpx2.AsyncClient(headers={"x-api-key": api_key}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def payload(result: CallToolResult) -> dict[str, Any]:
    """A tool result's JSON, from its text content (what every MCP client can read)."""
    assert result.content and result.content[0].type == "text"
    return json.loads(result.content[0].text)


async def upload(client: Client, pages: list[str], filename: str = "invoice.pdf") -> dict:
    content = base64.b64encode(text_pdf(pages)).decode()
    result = await client.call_tool(
        "upload_document", {"content_base64": content, "filename": filename}
    )
    assert not result.is_error, result.content
    return payload(result)


async def balance(harness: Harness, tenant: Tenant) -> int:
    return (await harness.client.get("/v1/account", headers=tenant.headers)).json()["balance"]


async def test_the_tools_are_listed_with_their_inputs(served: Harness):
    tenant = await served.tenant()
    async with mcp_session(served, tenant.api_key) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {
        "upload_document",
        "classify",
        "run_classifier",
        "split_document",
        "list_classifiers",
        "list_models",
        "list_reviews",
        "review_result",
    }
    classify = tools["classify"].input_schema
    assert set(classify["required"]) == {"document_id", "classification_schema"}
    assert {"page_range", "query_model"} <= set(classify["properties"])
    assert all(tool.description for tool in tools.values())


async def test_list_models_matches_the_rest_route(served: Harness):
    tenant = await served.tenant()
    async with mcp_session(served, tenant.api_key) as client:
        result = await client.call_tool("list_models", {})
    rest = (await served.client.get("/v1/models", headers=tenant.headers)).json()
    assert not result.is_error
    assert payload(result) == rest == result.structured_content
    assert [m["name"] for m in rest["models"]] == ["fake"]


async def test_upload_stores_and_extracts_like_the_rest_upload(served: Harness):
    tenant = await served.tenant()
    async with mcp_session(served, tenant.api_key) as client:
        document = await upload(client, INVOICE)
        again = payload(
            await client.call_tool("upload_document", {"document_id": document["document_id"]})
        )
    assert document["status"] == "processed" and document["num_pages"] == 2
    assert document["filename"] == "invoice.pdf"
    rest = (
        await served.client.get(f"/v1/documents/{document['document_id']}", headers=tenant.headers)
    ).json()
    assert again == {k: v for k, v in rest.items() if k != "pages"}
    page = await served.client.get(
        f"/v1/documents/{document['document_id']}/pages/1", headers=tenant.headers
    )
    assert "Amount due" in page.json()["text"]


async def test_upload_errors_are_contract_errors(served: Harness):
    tenant = await served.tenant()
    other = await served.tenant(name="other")
    async with mcp_session(served, other.api_key) as client:
        theirs = await upload(client, INVOICE)
    async with mcp_session(served, tenant.api_key) as client:
        calls = {
            "invalid_request": {"content_base64": "not base64 at all!"},
            "unsupported_file": {"content_base64": base64.b64encode(b"\x00\x01binary").decode()},
            "not_found": {"document_id": theirs["document_id"]},
        }
        for code, arguments in calls.items():
            result = await client.call_tool("upload_document", arguments)
            body = payload(result)
            assert result.is_error and body["success"] is False
            assert body["error"] == code and body["message"], (code, body)
            assert result.structured_content == body


async def test_a_missing_or_bad_key_is_refused_before_mcp(served: Harness):
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"accept": "application/json, text/event-stream"}
    for key in (None, "dsk_not-a-real-key"):
        sent = headers | ({"x-api-key": key} if key else {})
        response = await served.client.post("/mcp", json=request, headers=sent)
        assert response.status_code == 403
        assert response.json()["error"] == "invalid_api_key"
        assert response.json()["success"] is False
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True):
        async with mcp_session(served, "dsk_not-a-real-key") as client:
            await client.list_tools()


async def test_classify_is_billed_like_the_rest_call(
    served: Harness, fake_backend: FunctionBackend
):
    tenant = await served.tenant(credits=50)
    arguments = {"classification_schema": SCHEMA, "query_model": "fake"}
    async with mcp_session(served, tenant.api_key) as client:
        document = await upload(client, INVOICE)
        arguments["document_id"] = document["document_id"]
        result = await client.call_tool("classify", arguments)
    assert not result.is_error, result.content
    by_mcp = payload(result)
    assert result.structured_content == by_mcp
    rest = await served.client.post("/v1/classify", json=arguments, headers=tenant.headers)
    by_rest = rest.json()

    assert by_mcp.keys() == by_rest.keys()
    assert by_mcp["classification"] == by_rest["classification"] == "invoice"
    assert by_mcp["confidence_scores"] == by_rest["confidence_scores"]
    for body in (by_mcp, by_rest):
        assert (body["num_pages"], body["credits_used"]) == (2, 2)
    assert len(fake_backend.calls) == 2 and "INVOICE 1042" in fake_backend.calls[0].pages[0]
    assert await balance(served, tenant) == 46
    ledger = (await served.client.get("/v1/account/ledger", headers=tenant.headers)).json()
    debits = {e["request_id"]: e["amount"] for e in ledger["items"] if e["kind"] == "debit"}
    assert debits == {by_mcp["request_id"]: -2, by_rest["request_id"]: -2}
    audit = await served.client.get(
        f"/v1/classifications/{by_mcp['request_id']}", headers=tenant.headers
    )
    assert audit.status_code == 200 and audit.json()["classification"] == "invoice"


async def test_an_idempotent_retry_is_charged_once(served: Harness):
    tenant = await served.tenant(credits=50)
    async with mcp_session(served, tenant.api_key) as client:
        document = await upload(client, INVOICE)
        arguments = {
            "document_id": document["document_id"],
            "classification_schema": SCHEMA,
            "idempotency_key": "mail-4711-attachment-1",
        }
        first = payload(await client.call_tool("classify", arguments))
        second = payload(await client.call_tool("classify", arguments))
    assert first["request_id"] == second["request_id"]
    assert await balance(served, tenant) == 48


async def test_an_unknown_model_is_an_invalid_request_tool_error(served: Harness):
    tenant = await served.tenant(credits=50)
    async with mcp_session(served, tenant.api_key) as client:
        document = await upload(client, INVOICE)
        result = await client.call_tool(
            "classify",
            {
                "document_id": document["document_id"],
                "classification_schema": SCHEMA,
                "query_model": "no-such-model",
            },
        )
    body = payload(result)
    assert result.is_error
    assert body["error"] == "invalid_request" and "no-such-model" in body["message"]
    assert await balance(served, tenant) == 50


async def test_classify_errors_carry_the_contract_codes(served: Harness):
    tenant = await served.tenant(credits=2)
    async with mcp_session(served, tenant.api_key) as client:
        processed = await upload(client, INVOICE)
        content = base64.b64encode(text_pdf(INVOICE)).decode()
        raw = payload(
            await client.call_tool("upload_document", {"content_base64": content, "extract": False})
        )
        assert raw["status"] == "uploaded"
        three_pages = await upload(client, [*INVOICE, "Page three"])
        cases = {
            "invalid_request": {"document_id": processed["document_id"], "page_range": "7-9"},
            "document_not_processed": {"document_id": raw["document_id"]},
            "not_found": {"document_id": "00000000-0000-0000-0000-000000000000"},
            "insufficient_credits": {"document_id": three_pages["document_id"], "page_range": "1-"},
        }
        for code, arguments in cases.items():
            result = await client.call_tool(
                "classify", {"classification_schema": SCHEMA, **arguments}
            )
            assert result.is_error and payload(result)["error"] == code, (code, result.content)
        one_label = await client.call_tool(
            "classify",
            {"document_id": processed["document_id"], "classification_schema": SCHEMA[:1]},
        )
        assert payload(one_label)["error"] == "invalid_request"
    assert await balance(served, tenant) == 2


async def test_handshake_era_clients_are_served_too(served: Harness):
    """Clients that still open with `initialize` (protocol 2025-*) get the same tools."""
    tenant = await served.tenant()
    async with mcp_session(served, tenant.api_key, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        models = payload(await client.call_tool("list_models", {}))
    assert {"classify", "upload_document"} <= names
    assert models["default_model"] == "fake"


async def test_the_key_rate_limit_applies_to_mcp(settings: Settings):
    limited = settings.model_copy(update={"rate_limit_per_minute": 2})
    async with serve(limited, [FunctionBackend()]) as harness:
        tenant = await harness.tenant()
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = tenant.headers | {"accept": "application/json, text/event-stream"}
        statuses = []
        for _ in range(3):
            response = await harness.client.post("/mcp", json=request, headers=headers)
            statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert response.json()["error"] == "rate_limited" and int(response.headers["retry-after"]) >= 1


async def test_saved_classifiers_are_listed_and_run_like_rest(served: Harness):
    tenant = await served.tenant(credits=50)
    created = await served.client.post(
        "/v1/classifiers",
        json={"name": "mailroom", "classification_schema": SCHEMA, "page_range": "1"},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    classifier_id = created.json()["classifier_id"]
    async with mcp_session(served, tenant.api_key) as client:
        listed = payload(await client.call_tool("list_classifiers", {}))
        document = await upload(client, INVOICE)
        result = await client.call_tool(
            "run_classifier",
            {"classifier_id": classifier_id, "document_id": document["document_id"]},
        )
        missing = await client.call_tool(
            "run_classifier",
            {"classifier_id": "no-such-classifier", "document_id": document["document_id"]},
        )
    rest_list = (await served.client.get("/v1/classifiers", headers=tenant.headers)).json()
    assert listed == rest_list and listed["items"][0]["classifier_id"] == classifier_id
    run = payload(result)
    assert not result.is_error, run
    assert (run["classifier_id"], run["classifier_version"]) == (classifier_id, 1)
    assert (run["pages_used"], run["credits_used"]) == ([1], 1)  # the classifier's page_range
    assert payload(missing)["error"] == "not_found"
    assert await balance(served, tenant) == 49


def contract_if_agreement(request: ClassifyRequest) -> dict[str, float]:
    """A per-page answer: "agreement" on the page means contract, anything else invoice."""
    contract = any("agreement" in page.lower() for page in request.pages)
    return {"invoice": 0.1, "contract": 0.9} if contract else {"invoice": 0.9, "contract": 0.1}


async def test_split_document_matches_rest_and_charges_per_page(settings: Settings):
    async with serve(settings, [FunctionBackend(contract_if_agreement)]) as served:
        tenant = await served.tenant(credits=50)
        async with mcp_session(served, tenant.api_key) as client:
            document = await upload(client, [*INVOICE, "Service agreement between the parties"])
            arguments = {"document_id": document["document_id"], "classification_schema": SCHEMA}
            result = await client.call_tool("split_document", arguments)
            both = await client.call_tool(
                "split_document", arguments | {"classifier_id": "also-one"}
            )
        rest = await served.client.post("/v1/split", json=arguments, headers=tenant.headers)
        assert await balance(served, tenant) == 44
    split = payload(result)
    assert not result.is_error, split
    assert split["segments"] == rest.json()["segments"]
    labels = [s["classification"] for s in split["segments"]]
    assert labels[-1] == "contract" and set(labels[:-1]) == {"invoice"}
    assert split["segments"][-1]["pages"] == "3"
    assert (split["num_pages"], split["credits_used"]) == (3, 3)
    assert payload(both)["error"] == "invalid_request"


def test_base64_uploads_accept_data_urls_and_wrapped_lines_within_the_limit():
    data = bytes(range(256)) * 4
    encoded = base64.encodebytes(data).decode()  # wrapped at 76 characters
    assert "\n" in encoded.strip()
    assert decode_upload(encoded, limit=len(data)) == data
    assert decode_upload("data:application/pdf;base64," + encoded, limit=len(data)) == data
    with pytest.raises(PayloadTooLarge):
        decode_upload(encoded, limit=len(data) - 1)
    with pytest.raises(InvalidRequest):
        decode_upload("abc$", limit=100)


async def test_tools_check_the_key_scopes_like_the_routes(served: Harness):
    tenant = await served.tenant(credits=50)
    r = await served.client.post(
        "/v1/account/keys", json={"scopes": ["documents:write"]}, headers=tenant.headers
    )
    uploader = r.json()["api_key"]
    async with mcp_session(served, uploader) as client:
        document = await upload(client, INVOICE)  # documents:write is enough for this
        result = await client.call_tool(
            "classify",
            {"document_id": document["document_id"], "classification_schema": SCHEMA},
        )
        assert result.is_error
        assert payload(result) == {
            "success": False,
            "error": "forbidden",
            "message": "This API key lacks the 'classify' scope.",
        }
        result = await client.call_tool("list_classifiers", {})
        assert result.is_error and payload(result)["error"] == "forbidden"
    assert await balance(served, tenant) == 50


async def test_review_tools_list_and_decide_like_rest(served: Harness):
    tenant = await served.tenant()
    async with mcp_session(served, tenant.api_key) as client:
        document = await upload(client, INVOICE)
        # The fake backend's 0.7 top score is under a 0.8 threshold: pending.
        result = payload(
            await client.call_tool(
                "classify",
                {"document_id": document["document_id"], "classification_schema": SCHEMA},
            )
        )
        assert result["review_status"] in ("pending", "auto_accepted")
        queue = payload(await client.call_tool("list_reviews", {"status": "all"}))
        decided = payload(
            await client.call_tool(
                "review_result", {"request_id": result["request_id"], "label": "contract"}
            )
        )
        wrong = await client.call_tool(
            "review_result", {"request_id": result["request_id"], "label": "nope"}
        )
    assert [i["request_id"] for i in queue["items"]] == [result["request_id"]]
    keys = (await served.client.get("/v1/account/keys", headers=tenant.headers)).json()
    (key_id,) = [k["key_id"] for k in keys["items"]]
    # Recorded as the key that decided, as over REST.
    assert decided["review_status"] == "reviewed" and decided["decision"]["reviewed_by"] == key_id
    assert wrong.is_error and payload(wrong)["error"] == "invalid_request"
    rest = (
        await served.client.get(f"/v1/reviews/{result['request_id']}", headers=tenant.headers)
    ).json()
    assert rest == decided
