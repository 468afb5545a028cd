"""POST /v1/classify with the function model: validation, credits, idempotency, concurrency."""

import asyncio

import pytest

from tests.conftest import make_settings, start_harness
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "w9", "description": "IRS Form W-9"},
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


async def classify(client, tenant, **body):
    payload = {"classification_schema": SCHEMA, "query_model": "fake", **body}
    return await client.post("/v1/classify", json=payload, headers=tenant.headers)


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ([{"label": "only", "description": "one"}], "at least 2"),
        ([{"label": "a", "description": ""}, {"label": "A", "description": ""}], "Duplicate"),
        ([{"label": " ", "description": ""}, {"label": "b", "description": ""}], "empty"),
        ([{"label": "a\nZ: other", "description": ""}, {"label": "b"}], "line break"),
        ([{"label": "x" * 10_000, "description": ""}, {"label": "b", "description": ""}], "longer"),
        ([{"label": f"l{i}", "description": ""} for i in range(500)], "limit"),
        ([{"description": "no label"}, {"label": "b"}], "label"),
        ("not a list", "classification_schema"),
        ([{"label": 5, "description": []}, {"label": "b"}], "label"),
    ],
)
async def test_schema_mistakes_are_400(client, harness, tenant, schema, fragment):
    doc = await make_document(harness, tenant, ["text"])
    response = await classify(client, tenant, document_id=doc, classification_schema=schema)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body == {"success": False, "error": "invalid_request", "message": body["message"]}
    assert fragment.lower() in body["message"].lower()


@pytest.mark.parametrize("page_range", ["0", "3-1", "abc", "1--2", "4", "4-", "1,,2", "-1"])
async def test_bad_page_ranges_are_400(client, harness, tenant, page_range):
    doc = await make_document(harness, tenant, ["a", "b", "c"])
    response = await classify(client, tenant, document_id=doc, page_range=page_range)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_page_range_past_the_end_stops_at_the_last_page(
    client, harness, tenant, fake_backend
):
    doc = await make_document(harness, tenant, ["one", "two"])
    body = (await classify(client, tenant, document_id=doc, page_range="1-3")).json()
    assert body["num_pages"] == 2 and body["credits_used"] == 2 and body["pages_used"] == [1, 2]
    assert fake_backend.calls[-1].pages == ["one", "two"]


async def test_unknown_model_document_and_unprocessed_document(client, harness, tenant):
    doc = await make_document(harness, tenant, ["text"])
    unknown = await classify(client, tenant, document_id=doc, query_model="gpt-9-ultra")
    assert unknown.status_code == 400 and "gpt-9-ultra" in unknown.json()["message"]
    missing = await classify(client, tenant, document_id="00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    raw = await make_document(harness, tenant, ["text"], status="uploaded")
    unprocessed = await classify(client, tenant, document_id=raw)
    assert (
        unprocessed.status_code == 400 and unprocessed.json()["error"] == "document_not_processed"
    )


async def test_insufficient_credits_is_402_and_costs_nothing(harness, client):
    tenant = await harness.tenant(credits=2)
    doc = await make_document(harness, tenant, ["a", "b", "c"])
    response = await classify(client, tenant, document_id=doc)
    assert response.status_code == 402 and response.json()["error"] == "insufficient_credits"
    assert "3 credits" in response.json()["message"]
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 2 and account["reserved"] == 0


async def test_idempotency_key_returns_the_first_result_and_charges_once(client, harness, tenant):
    doc = await make_document(harness, tenant, ["a"])
    headers = {**tenant.headers, "Idempotency-Key": "order-42"}
    payload = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
    first = await client.post("/v1/classify", json=payload, headers=headers)
    again = await client.post("/v1/classify", json=payload, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["request_id"] == again.json()["request_id"]
    ledger = (await client.get("/v1/account/ledger", headers=tenant.headers)).json()
    assert [e["kind"] for e in ledger["items"]] == ["debit", "grant"]
    other = await client.post("/v1/classify", json={**payload, "page_range": "1"}, headers=headers)
    assert other.status_code == 400 and "Idempotency-Key" in other.json()["message"]


async def test_concurrent_retries_with_one_idempotency_key_run_once(
    client, harness, tenant, fake_backend
):
    doc = await make_document(harness, tenant, ["a"])
    headers = {**tenant.headers, "Idempotency-Key": "same"}
    payload = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
    responses = await asyncio.gather(
        *[client.post("/v1/classify", json=payload, headers=headers) for _ in range(5)]
    )
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 409} and 200 in codes
    assert len({r.json()["request_id"] for r in responses if r.status_code == 200}) == 1
    assert len(fake_backend.calls) == 1
    assert (await client.get("/v1/account", headers=tenant.headers)).json()["balance"] == 999


@pytest.fixture
async def slow_model_app(both_databases, tmp_path):
    from backend.backends.fake import FunctionBackend

    class Slow(FunctionBackend):
        async def classify(self, request):
            await asyncio.sleep(0.05)  # requests overlap while the model "thinks"
            return await super().classify(request)

    settings = make_settings(both_databases, tmp_path)
    async for harness in start_harness(settings, [Slow()]):
        yield harness


async def test_thirty_concurrent_classifications_on_ten_credits(slow_model_app):
    harness = slow_model_app
    tenant = await harness.tenant(credits=10)
    doc = await make_document(harness, tenant, ["one page"])
    responses = await asyncio.gather(
        *[classify(harness.client, tenant, document_id=doc) for _ in range(30)]
    )
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 10 and codes.count(402) == 20
    account = (await harness.client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 0 and account["reserved"] == 0
    ledger = (
        await harness.client.get("/v1/account/ledger?limit=200", headers=tenant.headers)
    ).json()
    assert sum(e["amount"] for e in ledger["items"]) == 0
    assert len({e["request_id"] for e in ledger["items"] if e["kind"] == "debit"}) == 10


async def test_history_is_filtered_and_scoped(client, harness, tenant):
    doc = await make_document(harness, tenant, ["a"])
    first = (await classify(client, tenant, document_id=doc)).json()
    await classify(client, tenant, document_id=doc)
    listed = (
        await client.get(f"/v1/classifications?document_id={doc}", headers=tenant.headers)
    ).json()
    assert listed["total"] == 2
    by_label = (
        await client.get("/v1/classifications?label=invoice", headers=tenant.headers)
    ).json()
    assert by_label["total"] == 0
    other = await harness.tenant(name="other")
    assert (
        await client.get(f"/v1/classifications/{first['request_id']}", headers=other.headers)
    ).status_code == 404
    assert (await client.get("/v1/classifications", headers=other.headers)).json()["total"] == 0


async def test_history_date_filters_take_iso_datetimes_only(client, harness, tenant):
    doc = await make_document(harness, tenant, ["a"])
    await classify(client, tenant, document_id=doc)
    since = await client.get(
        "/v1/classifications?since=2000-01-01T00:00:00Z", headers=tenant.headers
    )
    assert since.status_code == 200 and since.json()["total"] == 1
    until = await client.get(
        "/v1/classifications?until=2000-01-01T00:00:00Z", headers=tenant.headers
    )
    assert until.json()["total"] == 0
    assert (
        await client.get("/v1/classifications?until=0", headers=tenant.headers)
    ).status_code == 400
    assert (
        await client.get("/v1/classifications?since=yesterday", headers=tenant.headers)
    ).status_code == 400
