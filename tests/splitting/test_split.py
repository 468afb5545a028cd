"""POST /v1/split over HTTP: segments, credits, audit, classifiers, new documents, failures."""

import pymupdf
import pytest

from backend.backends.base import ClassifyRequest
from backend.errors import ModelError
from tests.fixtures.db import make_document
from tests.fixtures.documents import text_pdf

LABELS = ("w9", "invoice", "payslip")
SCHEMA = [
    {"label": "w9", "description": "IRS Form W-9"},
    {"label": "invoice", "description": "A bill"},
    {"label": "payslip", "description": "A pay stub"},
]
PACKET = [
    "Form W-9 Request for Taxpayer Identification Number. Name: ACME LLC",
    "Form W-9 (Rev. 10-2018) Page 2\nGeneral Instructions",
    "INVOICE No. 1001\nNorthwind Traders\nBill to: ACME LLC\nTotal due: 120.00",
    "INVOICE No. 1002\nNorthwind Traders\nBill to: ACME LLC\nTotal due: 80.00",
    "Pay stub for period 2024-03. Employee: Jane Roe. Net pay 2,000.00",
]


def by_keyword(request: ClassifyRequest) -> dict[str, float]:
    text = " ".join(request.pages).lower()
    for label, word in (("w9", "w-9"), ("invoice", "invoice"), ("payslip", "pay stub")):
        if word in text:
            return {k: (0.8 if k == label else 0.1) for k in LABELS}
    return {"w9": 0.34, "invoice": 0.33, "payslip": 0.33}


@pytest.fixture
def fake_backend():
    from backend.backends.fake import FunctionBackend

    return FunctionBackend(by_keyword)


async def split(client, tenant, doc, **extra):
    body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake", **extra}
    return await client.post("/v1/split", json=body, headers=tenant.headers)


async def test_packet_splits_into_its_documents_even_two_invoices_in_a_row(
    client, harness, tenant, fake_backend
):
    doc = await make_document(harness, tenant, PACKET)
    response = await split(client, tenant, doc)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(s["pages"], s["classification"]) for s in body["segments"]] == [
        ("1-2", "w9"),
        ("3", "invoice"),
        ("4", "invoice"),
        ("5", "payslip"),
    ]
    for segment in body["segments"]:
        scores = segment["confidence_scores"]
        assert set(scores) == set(LABELS) and abs(sum(scores.values()) - 1) <= 0.001
        assert segment["classification"] == max(scores, key=scores.get)
    # The second invoice starts a document because of what its page says, not its label.
    assert {"title", "doc_number_new"} <= set(body["segments"][2]["boundary_signals"])
    assert body["segments"][0]["boundary_signals"] is None
    assert body["credits_used"] == 5 and body["num_pages"] == 5
    # Every page classified on its own (five calls of one page each), then the one segment of
    # two pages classified as one document, its pages joined; one-page segments reuse their page's.
    assert [call.pages for call in fake_backend.calls] == [[p] for p in PACKET] + [PACKET[:2]]
    stored = (
        await client.get(f"/v1/classifications/{body['request_id']}", headers=tenant.headers)
    ).json()
    assert stored["kind"] == "split" and len(stored["result"]["segments"]) == 4
    assert [p["page"] for p in stored["result"]["page_scores"]] == [1, 2, 3, 4, 5]
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 995
    ledger = (await client.get("/v1/account/ledger", headers=tenant.headers)).json()
    debits = [e for e in ledger["items"] if e["kind"] == "debit"]
    assert len(debits) == 1 and debits[0]["amount"] == -5 and debits[0]["pages"] == 5


async def test_page_range_splits_only_those_pages(client, harness, tenant):
    doc = await make_document(harness, tenant, PACKET)
    body = (await split(client, tenant, doc, page_range="3-")).json()
    assert [(s["pages"], s["classification"]) for s in body["segments"]] == [
        ("3", "invoice"),
        ("4", "invoice"),
        ("5", "payslip"),
    ]
    assert body["credits_used"] == 3


async def test_create_documents_cuts_the_pdf_into_documents(client, harness, tenant):
    upload = await client.post(
        "/v1/documents",
        files={"file": ("packet.pdf", text_pdf(PACKET), "application/pdf")},
        headers=tenant.headers,
    )
    assert upload.status_code == 201, upload.text
    doc = upload.json()["document_id"]
    body = (await split(client, tenant, doc, create_documents=True)).json()
    ids = [s["document_id"] for s in body["segments"]]
    assert all(ids) and len(set(ids)) == 4 and doc not in ids
    first = (await client.get(f"/v1/documents/{ids[0]}", headers=tenant.headers)).json()
    assert first["num_pages"] == 2 and first["status"] == "processed"
    assert first["content_type"] == "application/pdf"
    # The new document has a file of its own: re-extracting it reads back exactly its pages.
    again = await client.post(f"/v1/documents/{ids[0]}/extract", headers=tenant.headers)
    assert again.status_code == 200 and again.json()["num_pages"] == 2
    page2 = (await client.get(f"/v1/documents/{ids[0]}/pages/2", headers=tenant.headers)).json()
    assert "General Instructions" in page2["text"]
    image = await client.get(f"/v1/documents/{ids[3]}/pages/1/image", headers=tenant.headers)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert pymupdf.open(stream=image.content).page_count == 1
    routed = await client.post(
        "/v1/classify",
        json={"document_id": ids[2], "classification_schema": SCHEMA, "query_model": "fake"},
        headers=tenant.headers,
    )
    assert routed.json()["classification"] == "invoice"
    # Deleting a segment leaves its parent readable.
    assert (
        await client.delete(f"/v1/documents/{ids[1]}", headers=tenant.headers)
    ).status_code == 200
    assert (
        await client.get(f"/v1/documents/{doc}/pages/1/image", headers=tenant.headers)
    ).status_code == 200


async def test_create_documents_from_text_only_pages(client, harness, tenant):
    doc = await make_document(harness, tenant, PACKET[2:4])
    body = (await split(client, tenant, doc, create_documents=True)).json()
    child = body["segments"][1]["document_id"]
    page = (await client.get(f"/v1/documents/{child}/pages/1", headers=tenant.headers)).json()
    assert page["text"] == PACKET[3]


async def test_split_with_a_classifier_uses_its_labels_instructions_and_examples(
    client, harness, tenant, fake_backend
):
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={
                "name": "mail",
                "classification_schema": SCHEMA,
                "query_model": "fake",
                "instructions": "Mail room packets.",
            },
            headers=tenant.headers,
        )
    ).json()
    cid = classifier["classifier_id"]
    for label, text in (
        ("invoice", "INVOICE No. 77 Contoso. Amount due 10.00"),
        ("payslip", "Pay stub: gross pay, net pay, deductions"),
        ("w9", "Form W-9 Request for Taxpayer Identification Number"),
        ("invoice", "Utility bill: electricity invoice, amount due"),
    ):
        example_doc = await make_document(harness, tenant, [text])
        added = await client.post(
            f"/v1/classifiers/{cid}/examples",
            json={"document_id": example_doc, "label": label},
            headers=tenant.headers,
        )
        assert added.status_code == 201
    doc = await make_document(harness, tenant, PACKET[:3])
    response = await client.post(
        "/v1/split", json={"document_id": doc, "classifier_id": cid}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["classifier_id"] == cid and body["classifier_version"] == 1
    assert [s["pages"] for s in body["segments"]] == ["1-2", "3"]
    # Three pages, then the two-page segment classified as one document (its pages joined).
    calls, segment_call = fake_backend.calls[-4:-1], fake_backend.calls[-1]
    assert segment_call.pages == PACKET[:2]
    assert all(c.instructions == "Mail room packets." for c in [*calls, segment_call])
    # An LLM-style model gets the few examples nearest to each page, nearest first.
    assert calls[0].examples[0].label == "w9" and calls[2].examples[0].label == "invoice"
    assert segment_call.examples[0].label == "w9"
    assert all(len(c.examples) == 3 for c in [*calls, segment_call])


async def test_errors_cost_nothing(client, harness, tenant, fake_backend):
    doc = await make_document(harness, tenant, PACKET)
    both = await client.post(
        "/v1/split",
        json={"document_id": doc, "classifier_id": "x", "classification_schema": SCHEMA},
        headers=tenant.headers,
    )
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    assert (await split(client, tenant, doc, page_range="9-")).status_code == 400
    poor = await harness.tenant(credits=1, name="poor")
    their_doc = await make_document(harness, poor, PACKET)
    assert (await split(client, poor, their_doc)).status_code == 402
    assert (await split(client, tenant, their_doc)).status_code == 404
    unprocessed = await make_document(harness, tenant, PACKET, status="uploaded")
    assert (await split(client, tenant, unprocessed)).json()["error"] == "document_not_processed"

    def fails_on_page_four(request: ClassifyRequest) -> dict[str, float]:
        if request.page_numbers == [4]:
            raise ModelError("the model is down")
        return by_keyword(request)

    fake_backend.answer = fails_on_page_four
    failed = await split(client, tenant, doc, create_documents=True)
    assert failed.status_code == 502 and failed.json()["error"] == "model_error"
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 1000 and account["reserved"] == 0
    listed = (await client.get("/v1/documents", headers=tenant.headers)).json()
    assert listed["total"] == 2  # no segment documents were left behind


RETURN = [
    "Form\n1040\n2021\nU.S. Individual Income Tax Return\nSSN 123-45-6789",
    "Form 1040 (2021)\nPage 2\nTax and Credits\nSSN 123-45-6789",
    "SCHEDULE A\n(Form 1040)\nItemized Deductions\nAttach to Form 1040 or 1040-SR.",
    "SCHEDULE 8812\n(Form 1040)\nCredits for Qualifying Children\nAttach to Form 1040.",
    "Pay stub for period 2024-03. Employee: Jane Roe. Net pay 2,000.00",
]
TAX_SCHEMA = [
    {"label": "form_1040", "description": "IRS Form 1040 or one of its schedules"},
    {"label": "payslip", "description": "A pay stub"},
]


async def test_group_attachments_makes_a_return_and_its_schedules_one_segment(
    client, harness, tenant, fake_backend
):
    def by_form(request: ClassifyRequest) -> dict[str, float]:
        form = "1040" in " ".join(request.pages)
        return {"form_1040": 0.9 if form else 0.1, "payslip": 0.1 if form else 0.9}

    fake_backend.answer = by_form
    doc = await make_document(harness, tenant, RETURN)

    async def pages_of(**extra) -> list[tuple[str, str, list[str] | None]]:
        body = {"document_id": doc, "classification_schema": TAX_SCHEMA, "query_model": "fake"}
        response = await client.post("/v1/split", json=body | extra, headers=tenant.headers)
        assert response.status_code == 200, response.text
        for segment in response.json()["segments"]:
            assert 0 <= segment["boundary_confidence"] <= 1
            assert segment["review"] == (segment["boundary_confidence"] < 0.8)
        return [
            (s["pages"], s["classification"], s["attachments"]) for s in response.json()["segments"]
        ]

    # By default each schedule is a document of its own.
    assert await pages_of() == [
        ("1-2", "form_1040", None),
        ("3", "form_1040", None),
        ("4", "form_1040", None),
        ("5", "payslip", None),
    ]
    assert await pages_of(group_attachments=True) == [
        ("1-4", "form_1040", ["3", "4"]),
        ("5", "payslip", []),
    ]
    bad = await client.post(
        "/v1/split",
        json={"document_id": doc, "classification_schema": TAX_SCHEMA, "group_attachments": "x"},
        headers=tenant.headers,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


async def test_unsure_boundaries_are_flagged_for_review(client, harness, tenant):
    """Two pages that say nothing about where documents end: the split is a guess."""
    doc = await make_document(harness, tenant, ["Pay stub Jane", "Pay stub notes"])
    body = (await split(client, tenant, doc)).json()
    assert any(s["review"] for s in body["segments"]), body["segments"]


async def test_a_continuation_page_keeps_its_purchase_order_together(
    client, harness, tenant, fake_backend
):
    # The console's sample packet: the order's second page heads itself with the order number.
    bundle = [
        "INVOICE 2024-117\nBill to: Northwind Traders\nAmount due: 1,250.00 USD\nPayment due",
        "Invoice 2024-117, page 2\nLine items: widgets 40 x 25.00\nTotal due 1,250.00 USD",
        "PURCHASE ORDER PO-5521\nVendor: Acme Supplies\nShip to: Northwind Traders\nQty: 40",
        "Purchase order PO-5521, terms\nDeliver within 14 days of this order",
    ]
    doc = await make_document(harness, tenant, bundle)
    body = (await split(client, tenant, doc)).json()
    assert [s["pages"] for s in body["segments"]] == ["1-2", "3-4"]
    assert "doc_number_new" in body["segments"][1]["boundary_signals"]


async def test_a_document_alone_gets_the_label_classify_gives_it(
    client, harness, tenant, fake_backend
):
    # Its pages disagree (two pay stub pages, then one about an invoice); read whole, the model
    # calls it an invoice, and so must the split, exactly as /v1/classify does.
    pages = [
        "ACME Payroll\nPage 1 of 3\nPay stub for March, net pay 2,000.00",
        "ACME Payroll\nPage 2 of 3\nPay stub details: hours and rates",
        "ACME Payroll\nPage 3 of 3\nDeductions: see the invoice from the benefits provider",
    ]
    doc = await make_document(harness, tenant, pages)
    body = (await split(client, tenant, doc)).json()
    classified = await client.post(
        "/v1/classify",
        json={"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"},
        headers=tenant.headers,
    )
    assert classified.status_code == 200, classified.text
    assert [s["pages"] for s in body["segments"]] == ["1-3"]
    segment = body["segments"][0]
    assert segment["classification"] == classified.json()["classification"] == "invoice"
    assert segment["confidence_scores"] == classified.json()["confidence_scores"]
    stored = (
        await client.get(f"/v1/classifications/{body['request_id']}", headers=tenant.headers)
    ).json()
    page_scores = [p["confidence_scores"] for p in stored["result"]["page_scores"]]
    assert [max(p, key=p.get) for p in page_scores] == ["payslip", "payslip", "invoice"]
