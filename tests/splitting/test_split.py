"""POST /v1/split: boundaries from labels and page signals, segment scores, credits, new documents."""

import pytest

from backend.backends.base import ClassifyRequest
from backend.splitting.boundaries import PageSignal, segment_starts
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "w9", "description": "IRS Form W-9"},
    {"label": "invoice", "description": "A bill"},
    {"label": "payslip", "description": "A pay stub"},
]


def by_keyword(request: ClassifyRequest) -> dict[str, float]:
    text = " ".join(request.pages).lower()
    for label, word in (("w9", "w-9"), ("invoice", "invoice"), ("payslip", "pay stub")):
        if word in text:
            return {k: (0.8 if k == label else 0.1) for k in ("w9", "invoice", "payslip")}
    return {"w9": 0.34, "invoice": 0.33, "payslip": 0.33}


@pytest.fixture
def fake_backend():
    from backend.backends.fake import FunctionBackend

    return FunctionBackend(by_keyword)


PACKET = [
    "Form W-9 Request for Taxpayer Identification Number. Name: ACME LLC",
    "Form W-9 (Rev. 10-2018) Page 2 General Instructions",
    "INVOICE No. 1001\nNorthwind Traders\nBill to: ACME LLC\nTotal due: 120.00",
    "INVOICE No. 1002\nNorthwind Traders\nBill to: ACME LLC\nTotal due: 80.00",
    "Pay stub for period 2024-03. Employee: Jane Roe. Net pay 2,000.00",
]


async def test_packet_splits_into_its_documents_even_two_invoices_in_a_row(client, harness, tenant):
    doc = await make_document(harness, tenant, PACKET)
    response = await client.post(
        "/v1/split",
        json={"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(s["pages"], s["classification"]) for s in body["segments"]] == [
        ("1-2", "w9"),
        ("3", "invoice"),
        ("4", "invoice"),
        ("5", "payslip"),
    ]
    for segment in body["segments"]:
        assert abs(sum(segment["confidence_scores"].values()) - 1) <= 0.001
    assert body["credits_used"] == 5 and body["num_pages"] == 5
    stored = (
        await client.get(f"/v1/classifications/{body['request_id']}", headers=tenant.headers)
    ).json()
    assert stored["kind"] == "split" and len(stored["result"]["segments"]) == 4
    assert (await client.get("/v1/account", headers=tenant.headers)).json()["balance"] == 995


async def test_create_documents_stores_each_segment(client, harness, tenant):
    doc = await make_document(harness, tenant, PACKET)
    body = (
        await client.post(
            "/v1/split",
            json={
                "document_id": doc,
                "classification_schema": SCHEMA,
                "query_model": "fake",
                "create_documents": True,
            },
            headers=tenant.headers,
        )
    ).json()
    ids = [s["document_id"] for s in body["segments"]]
    assert all(ids) and len(set(ids)) == 4
    first = (await client.get(f"/v1/documents/{ids[0]}", headers=tenant.headers)).json()
    assert first["num_pages"] == 2 and first["status"] == "processed"
    routed = await client.post(
        "/v1/classify",
        json={"document_id": ids[1], "classification_schema": SCHEMA, "query_model": "fake"},
        headers=tenant.headers,
    )
    assert routed.json()["classification"] == "invoice"


async def test_split_with_a_classifier_and_errors(client, harness, tenant):
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={"name": "mail", "classification_schema": SCHEMA, "query_model": "fake"},
            headers=tenant.headers,
        )
    ).json()
    doc = await make_document(harness, tenant, PACKET[:3])
    body = (
        await client.post(
            "/v1/split",
            json={"document_id": doc, "classifier_id": classifier["classifier_id"]},
            headers=tenant.headers,
        )
    ).json()
    assert body["classifier_id"] == classifier["classifier_id"] and len(body["segments"]) == 2
    both = await client.post(
        "/v1/split",
        json={
            "document_id": doc,
            "classifier_id": classifier["classifier_id"],
            "classification_schema": SCHEMA,
        },
        headers=tenant.headers,
    )
    assert both.status_code == 400
    poor = await harness.tenant(credits=1, name="poor")
    their_doc = await make_document(harness, poor, PACKET)
    assert (
        await client.post(
            "/v1/split",
            json={"document_id": their_doc, "classification_schema": SCHEMA, "query_model": "fake"},
            headers=poor.headers,
        )
    ).status_code == 402
    assert (
        await client.post(
            "/v1/split",
            json={"document_id": their_doc, "classification_schema": SCHEMA, "query_model": "fake"},
            headers=tenant.headers,
        )
    ).status_code == 404


def test_boundary_signals():
    pages = [
        PageSignal("a", "Report\nPage 1 of 2"),
        PageSignal("a", "Report\nPage 2 of 2"),
        PageSignal("a", "Report\nPage 1 of 1"),
    ]
    assert segment_starts(pages) == [0, 2]
    continued = [PageSignal("b", "STATEMENT ACME"), PageSignal("b", "STATEMENT ACME (continued)")]
    assert segment_starts(continued) == [0]
