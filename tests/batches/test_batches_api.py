"""Batches over HTTP (SQLite, the in-process worker): create, list, get, refusal with its cost,
zip uploads, classifiers, idempotency and tenant isolation."""

import asyncio

import pytest

from backend.backends.base import ClassifyRequest
from tests.conftest import make_settings
from tests.fixtures.db import make_document
from tests.fixtures.documents import text_pdf, zip_of

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


def keyword_answer(request: ClassifyRequest) -> dict[str, float]:
    if "invoice" in " ".join(request.pages).lower():
        return {"invoice": 0.9, "other": 0.1}
    return {"invoice": 0.2, "other": 0.8}


@pytest.fixture
def fake_backend():
    from backend.backends.fake import FunctionBackend

    return FunctionBackend(keyword_answer)


@pytest.fixture
def settings(database_url, tmp_path):
    return make_settings(database_url, tmp_path, webhook_backoff_seconds=0.05)


async def wait_batch(client, tenant, batch_id: str, seconds: float = 30.0) -> dict:
    for _ in range(int(seconds / 0.05)):
        body = (await client.get(f"/v1/batches/{batch_id}", headers=tenant.headers)).json()
        if body["status"] == "completed":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch did not complete: {body}")


async def _documents(harness, tenant, n: int, pages: int = 1) -> list[str]:
    return [
        await make_document(
            harness, tenant, [f"invoice {i}" if i % 2 == 0 else f"letter {i}"] * pages
        )
        for i in range(n)
    ]


async def test_create_get_and_list_a_batch(client, harness, tenant, fake_backend):
    ids = await _documents(harness, tenant, 5, pages=2)
    created = await client.post(
        "/v1/batches",
        json={"classification_schema": SCHEMA, "query_model": "fake", "document_ids": ids},
        headers=tenant.headers,
    )
    assert created.status_code == 202, created.text
    started = created.json()
    assert started["total"] == 5 and started["credits_estimate"] == 10
    assert started["status"] in ("queued", "running", "completed")
    body = await wait_batch(client, tenant, started["batch_id"])
    assert (body["done"], body["succeeded"], body["failed"]) == (5, 5, 0)
    assert body["credits_used"] == 10 and body["finished_at"] is not None
    assert [i["document_id"] for i in body["items"]] == ids
    for n, item in enumerate(body["items"]):
        result = item["result"]
        assert item["status"] == "completed" and item["attempts"] == 1
        # The item's id is the request id of its classification: one result per item.
        assert result["request_id"] == item["item_id"] and result["num_pages"] == 2
        assert result["classification"] == ("invoice" if n % 2 == 0 else "other")
        assert abs(sum(result["confidence_scores"].values()) - 1) < 0.001
    audit = await client.get(
        f"/v1/classifications/{body['items'][0]['item_id']}", headers=tenant.headers
    )
    assert audit.status_code == 200 and audit.json()["classification"] == "invoice"
    assert len(fake_backend.calls) == 5
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 1000 - 10 and account["reserved"] == 0
    ledger = (await client.get("/v1/account/ledger", headers=tenant.headers)).json()["items"]
    debits = [e for e in ledger if e["kind"] == "debit"]
    assert sorted(e["request_id"] for e in debits) == sorted(i["item_id"] for i in body["items"])
    listed = (await client.get("/v1/batches", headers=tenant.headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["batch_id"] == started["batch_id"]
    assert listed["items"][0]["done"] == 5
    only_done = await client.get(
        f"/v1/batches/{started['batch_id']}?status=failed", headers=tenant.headers
    )
    assert only_done.json()["items"] == []


async def test_a_batch_the_balance_cannot_cover_is_refused_with_its_cost(client, harness):
    tenant = await harness.tenant(credits=5)
    ids = await _documents(harness, tenant, 3, pages=2)
    response = await client.post(
        "/v1/batches",
        json={"classification_schema": SCHEMA, "query_model": "fake", "document_ids": ids},
        headers=tenant.headers,
    )
    assert response.status_code == 402
    assert response.json() == {
        "success": False,
        "error": "insufficient_credits",
        "message": "This batch will cost 6 credits; the account has 5 available.",
    }
    assert (await client.get("/v1/batches", headers=tenant.headers)).json()["total"] == 0
    # A page range that fits the balance is accepted: credits are per page used.
    ok = await client.post(
        "/v1/batches",
        json={
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "document_ids": ids,
            "page_range": "1",
        },
        headers=tenant.headers,
    )
    assert ok.status_code == 202 and ok.json()["credits_estimate"] == 3


async def test_bad_requests(client, harness, tenant):
    doc = await make_document(harness, tenant, ["x"])
    unprocessed = await make_document(harness, tenant, ["x"], status="uploaded")
    base = {"classification_schema": SCHEMA, "query_model": "fake"}
    for body, status in [
        ({**base, "document_ids": []}, 400),
        ({"query_model": "fake", "document_ids": [doc]}, 400),
        ({**base, "classifier_id": "x", "document_ids": [doc]}, 400),
        ({**base, "query_model": "nope", "document_ids": [doc]}, 400),
        ({**base, "document_ids": [unprocessed]}, 400),
        ({**base, "document_ids": [doc], "page_range": "5-6"}, 400),
        ({**base, "document_ids": [doc], "webhook_url": "ftp://example.com/x"}, 400),
        ({**base, "document_ids": ["missing"]}, 404),
    ]:
        response = await client.post("/v1/batches", json=body, headers=tenant.headers)
        assert response.status_code == status, (body, response.text)
        assert response.json()["success"] is False
    assert (await client.get("/v1/batches/nope", headers=tenant.headers)).status_code == 404


async def test_a_zip_upload_feeds_a_batch(client, harness, tenant):
    archive = zip_of(
        {
            "a.pdf": text_pdf(["Invoice 1 total due"]),
            "b.txt": b"A letter about the weather, nothing to pay.",
            "c.pdf": text_pdf(["Invoice 3", "second page"]),
            "broken.pdf": b"%PDF-1.4 this is not really a pdf",
        }
    )
    response = await client.post(
        "/v1/batch-uploads",
        files={"file": ("docs.zip", archive, "application/zip")},
        data={"batch": _json({"classification_schema": SCHEMA, "query_model": "fake"})},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["total"] == 4 and started["credits_estimate"] == 4
    assert sorted(d["filename"] for d in started["documents"]) == [
        "a.pdf",
        "b.txt",
        "broken.pdf",
        "c.pdf",
    ]
    body = await wait_batch(client, tenant, started["batch_id"])
    assert (body["succeeded"], body["failed"], body["credits_used"]) == (3, 1, 4)
    by_doc = {d["document_id"]: d["filename"] for d in started["documents"]}
    results = {by_doc[i["document_id"]]: i for i in body["items"]}
    assert results["a.pdf"]["result"]["classification"] == "invoice"
    assert results["b.txt"]["result"]["classification"] == "other"
    assert results["broken.pdf"]["status"] == "failed"
    assert results["broken.pdf"]["error"].startswith("unsupported_file")
    bad_options = await client.post(
        "/v1/batch-uploads",
        files={"file": ("docs.zip", archive, "application/zip")},
        data={"batch": '{"query_model": "fake"}'},
        headers=tenant.headers,
    )
    assert bad_options.status_code == 400 and bad_options.json()["error"] == "invalid_request"


def _json(value) -> str:
    import json

    return json.dumps(value)


async def test_a_batch_of_a_saved_classifier_uses_its_version(client, harness, tenant):
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={
                "name": "router",
                "classification_schema": SCHEMA,
                "query_model": "fake",
                "page_range": "1",
            },
            headers=tenant.headers,
        )
    ).json()
    ids = await _documents(harness, tenant, 2, pages=3)
    started = (
        await client.post(
            "/v1/batches",
            json={"classifier_id": classifier["classifier_id"], "document_ids": ids},
            headers=tenant.headers,
        )
    ).json()
    assert started["credits_estimate"] == 2  # the classifier's page range: one page each
    body = await wait_batch(client, tenant, started["batch_id"])
    assert body["classifier_id"] == classifier["classifier_id"]
    assert body["classifier_version"] == 1 and body["page_range"] == "1"
    for item in body["items"]:
        assert item["result"]["classifier_version"] == 1
        assert item["result"]["pages_used"] == [1]


async def test_idempotency_key_returns_the_same_batch(client, harness, tenant, fake_backend):
    ids = await _documents(harness, tenant, 2)
    body = {"classification_schema": SCHEMA, "query_model": "fake", "document_ids": ids}
    headers = {**tenant.headers, "Idempotency-Key": "batch-1"}
    first = await client.post("/v1/batches", json=body, headers=headers)
    second = await client.post("/v1/batches", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["batch_id"] == second.json()["batch_id"]
    await wait_batch(client, tenant, first.json()["batch_id"])
    assert (await client.get("/v1/batches", headers=tenant.headers)).json()["total"] == 1
    assert len(fake_backend.calls) == 2


async def test_another_accounts_batches_are_not_found(client, harness, tenant):
    ids = await _documents(harness, tenant, 1)
    started = (
        await client.post(
            "/v1/batches",
            json={"classification_schema": SCHEMA, "query_model": "fake", "document_ids": ids},
            headers=tenant.headers,
        )
    ).json()
    await wait_batch(client, tenant, started["batch_id"])
    intruder = await harness.tenant(name="intruder")
    seen = await client.get(f"/v1/batches/{started['batch_id']}", headers=intruder.headers)
    assert seen.status_code == 404 and seen.json()["error"] == "not_found"
    assert (await client.get("/v1/batches", headers=intruder.headers)).json()["total"] == 0
    # Nor can the intruder batch the owner's documents.
    theirs = await client.post(
        "/v1/batches",
        json={"classification_schema": SCHEMA, "query_model": "fake", "document_ids": ids},
        headers=intruder.headers,
    )
    assert theirs.status_code == 404
