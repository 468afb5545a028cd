"""Multi-label with the embedded `local` model, through the HTTP API: a document read part by part
(pages, or windows of one text), an independent probability per label."""

import asyncio

import pytest

from backend.backends.local import LocalBackend
from backend.backends.local.multilabel import WINDOW, parts, windows
from tests.conftest import make_settings, start_harness
from tests.documents.conftest import upload
from tests.fixtures.db import make_document
from tests.fixtures.documents import text_pdf

SCHEMA = [
    {"label": "invoice", "description": "A document requesting payment for goods or services"},
    {"label": "purchase_order", "description": "A buyer-issued document authorizing a purchase"},
    {"label": "contract", "description": "A legally binding agreement between two or more parties"},
    {"label": "other", "description": "Any document that does not fit the above categories"},
]
CONTRACT = (
    "SERVICES AGREEMENT\n"
    "This Services Agreement (the Agreement) is entered into as of 1 March 2024 by and between "
    "Acme Corporation, a Delaware corporation (the Client), and Beta Consulting LLC (the "
    "Contractor). The parties agree as follows.\n"
    "1. Services. The Contractor shall provide the consulting services described in Exhibit A.\n"
    "2. Term. This Agreement begins on the Effective Date and continues for twelve months unless "
    "terminated earlier under Section 6.\n"
    "3. Fees. The Client shall pay the fees set out in Exhibit B within thirty days.\n"
    "4. Confidentiality. Each party shall keep the other party's confidential information secret "
    "and use it only to perform this Agreement.\n"
    "5. Liability. Neither party is liable for indirect or consequential damages.\n"
    "6. Termination. Either party may terminate this Agreement on thirty days' written notice.\n"
    "7. Governing law. This Agreement is governed by the laws of the State of New York.\n"
    "IN WITNESS WHEREOF the parties have executed this Agreement as of the date above.\n"
    "Acme Corporation, by: ____________  Beta Consulting LLC, by: ____________\n"
)
INVOICE = (
    "INVOICE\nInvoice number: 2024-117    Invoice date: 31 March 2024\n"
    "Bill to: Acme Corporation, 12 Main Street, Springfield\n"
    "From: Beta Consulting LLC\n"
    "Description                        Qty   Unit price   Amount\n"
    "Consulting services, March 2024     40       150.00    6,000.00\n"
    "Travel expenses                      1       320.00      320.00\n"
    "Subtotal 6,320.00   Tax 0.00   Total amount due 6,320.00 USD\n"
    "Payment due within 30 days. Please pay by bank transfer to account 12-3456-789.\n"
)
INVOICE_PAGE_2 = (
    "Invoice 2024-117 (continued), page 2 of 2\n"
    "Expenses detail: train tickets 180.00, hotel 140.00. Amount due 6,320.00 USD.\n"
    "Payment terms: net 30 days. Late payments bear interest of 1% a month.\n"
)


@pytest.fixture
async def local(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path)
    async for harness in start_harness(settings, [LocalBackend(settings)]):
        yield harness, await harness.tenant()


async def classify(harness, tenant, document_id: str, **extra) -> dict:
    body = {"document_id": document_id, "classification_schema": SCHEMA, "query_model": "local"}
    response = await harness.client.post(
        "/v1/classify", json={**body, **extra}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_model_list_says_local_supports_multi_label(local):
    harness, tenant = local
    models = (await harness.client.get("/v1/models", headers=tenant.headers)).json()
    local_model = next(m for m in models["models"] if m["name"] == "local")
    assert local_model["supports_multi_label"] is True


async def test_a_pdf_of_a_contract_then_an_invoice_is_both(local):
    harness, tenant = local
    uploaded = await upload(harness.client, tenant, text_pdf([CONTRACT, INVOICE]), "pack.pdf")
    assert uploaded.status_code in (200, 201), uploaded.text
    body = await classify(harness, tenant, uploaded.json()["document_id"], multi_label=True)
    scores = body["confidence_scores"]
    assert set(body["classifications"]) == {"contract", "invoice"}, scores
    assert body["classification"] in ("contract", "invoice")
    assert body["classifications"][0] == body["classification"]
    assert sum(scores.values()) > 1.2  # independent, not a distribution
    assert scores["purchase_order"] < 0.5 and scores["other"] < 0.5
    assert body["modes"]["multi_label"] is True
    # Single-label on the same document still answers one distribution, led by its opening.
    single = await classify(harness, tenant, uploaded.json()["document_id"])
    assert single["classifications"] is None and single["classification"] == "contract"
    assert abs(sum(single["confidence_scores"].values()) - 1) < 0.001


async def test_a_text_file_with_two_documents_back_to_back_is_both(local):
    harness, tenant = local
    text = (CONTRACT + "\n\n" + INVOICE).encode()
    uploaded = await upload(harness.client, tenant, text, "pack.txt")
    assert uploaded.status_code in (200, 201), uploaded.text
    body = await classify(harness, tenant, uploaded.json()["document_id"], multi_label=True)
    assert set(body["classifications"]) == {"contract", "invoice"}, body["confidence_scores"]


async def test_a_single_kind_document_is_one_label(local):
    harness, tenant = local
    doc = await make_document(harness, tenant, [INVOICE, INVOICE_PAGE_2])
    body = await classify(harness, tenant, doc, multi_label=True)
    assert body["classifications"] == ["invoice"], body["confidence_scores"]
    contract = await make_document(harness, tenant, [CONTRACT])
    body = await classify(harness, tenant, contract, multi_label=True)
    assert body["classifications"] == ["contract"], body["confidence_scores"]


def test_a_long_text_is_read_in_overlapping_windows_opening_at_lines():
    text = "".join(f"line {i:04d} " + "x" * 60 + "\n" for i in range(100))  # 7,200 characters
    got = windows(text)
    assert len(got) > 1 and got[0] == text[:WINDOW] and text.endswith(got[-1])
    assert all(w.startswith("line ") and len(w) <= WINDOW for w in got)
    # Every character is in some window, and a window starts at most every STRIDE characters.
    starts = [text.index(w) for w in got]
    assert all(b - a <= WINDOW for a, b in zip(starts, starts[1:], strict=False))
    assert parts(["page one", "", "page two"]) == ["page one", "page two"]
    assert parts(["short text"]) == ["short text"]


async def test_batches_split_and_evaluations_take_multi_label_with_local(local):
    from tests.batches.test_batches_api import wait_batch

    harness, tenant = local
    both = await make_document(harness, tenant, [CONTRACT, INVOICE])
    invoice = await make_document(harness, tenant, [INVOICE])
    created = await harness.client.post(
        "/v1/batches",
        json={
            "classification_schema": SCHEMA,
            "query_model": "local",
            "document_ids": [both, invoice],
            "multi_label": True,
        },
        headers=tenant.headers,
    )
    assert created.status_code == 202, created.text
    batch = await wait_batch(harness.client, tenant, created.json()["batch_id"], seconds=120)
    results = [item["result"] for item in batch["items"]]
    assert [set(r["classifications"]) for r in results] == [{"contract", "invoice"}, {"invoice"}]

    split = await harness.client.post(
        "/v1/split",
        json={
            "document_id": both,
            "classification_schema": SCHEMA,
            "query_model": "local",
            "multi_label": True,
        },
        headers=tenant.headers,
    )
    assert split.status_code == 200, split.text
    segments = split.json()["segments"]
    assert [s["classification"] for s in segments] == ["contract", "invoice"]

    items = [
        {"document_id": both, "expected_labels": ["contract", "invoice"]},
        {"document_id": invoice, "expected_labels": ["invoice"]},
        {"document_id": invoice, "expected_labels": ["invoice", "purchase_order"]},
    ]
    started = await harness.client.post(
        "/v1/evaluations",
        json={
            "classification_schema": SCHEMA,
            "query_model": "local",
            "items": items,
            "multi_label": True,
        },
        headers=tenant.headers,
    )
    assert started.status_code in (200, 201, 202), started.text
    url = f"/v1/evaluations/{started.json()['evaluation_id']}"
    for _ in range(1200):
        result = (await harness.client.get(url, headers=tenant.headers)).json()
        if result["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.05)
    assert result["status"] == "completed", result
    metrics = result["metrics"]["multi_label"]
    # 5 expected label decisions, 4 found (purchase_order missed), none extra.
    assert metrics["exact_match"] == pytest.approx(2 / 3, abs=1e-3)
    assert metrics["micro_f1"] == pytest.approx(2 * 0.8 / 1.8, abs=1e-3)
    assert metrics["per_label"]["purchase_order"]["recall"] == 0.0
    assert metrics["per_label"]["contract"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
    }
    assert sum(r["count"] for r in metrics["reliability_per_label"]["invoice"]) == 3


async def test_a_classifier_with_examples_reads_each_page_with_its_trained_model(
    database_url, tmp_path
):
    settings = make_settings(database_url, tmp_path, training_debounce_seconds=0.2)
    async for harness in start_harness(settings, [LocalBackend(settings)]):
        tenant = await harness.tenant()
        client = harness.client
        labels = [
            {"label": "alpha", "description": "first"},
            {"label": "beta", "description": "second"},
        ]
        created = await client.post(
            "/v1/classifiers",
            json={"name": "t", "classification_schema": labels, "query_model": "local"},
            headers=tenant.headers,
        )
        cid = created.json()["classifier_id"]
        harbour, music = "harbour crane container vessel", "violin orchestra symphony concerto"
        for i in range(4):
            for label, words in (("alpha", harbour), ("beta", music)):
                doc = await make_document(harness, tenant, [f"{words} {i}"])
                await client.post(
                    f"/v1/classifiers/{cid}/examples",
                    json={"document_id": doc, "label": label},
                    headers=tenant.headers,
                )
        both = await make_document(
            harness,
            tenant,
            ["the vessel left the harbour crane", "the orchestra played a symphony"],
        )
        one = await make_document(harness, tenant, ["a violin concerto", "the symphony orchestra"])
        results = []
        for doc in (both, one):
            response = await client.post(
                f"/v1/classifiers/{cid}/run",
                json={"document_id": doc, "multi_label": True},
                headers=tenant.headers,
            )
            assert response.status_code == 200, response.text
            results.append(response.json())
        assert all(r["confidence_method"] == "local_trained" for r in results)
        assert set(results[0]["classifications"]) == {"alpha", "beta"}, results[0]
        assert results[1]["classifications"] == ["beta"], results[1]
        assert sum(results[0]["confidence_scores"].values()) > 1.2
