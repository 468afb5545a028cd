"""Uploads that work: PDFs with a text layer, scans and photos read by Tesseract, text files,
upload-then-extract, and what happens without OCR."""

import asyncio
import os
import signal

import pytest

from tests.conftest import make_settings, start_harness
from tests.documents.conftest import INVOICE, harness_with_pool, image_bytes, upload
from tests.fixtures.documents import (
    png_of_text,
    scan_with_unreadable_text_layer,
    scanned_pdf,
    text_pdf,
)


async def page_json(client, tenant, document_id: str, n: int) -> dict:  # noqa: ANN001
    response = await client.get(f"/v1/documents/{document_id}/pages/{n}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_text_pdf_is_processed_without_ocr(client, tenant, harness):
    pages = [INVOICE, "Page two: thank you for your business, Northwind"]
    response = await upload(client, tenant, text_pdf(pages), "invoice.pdf")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "processed" and body["num_pages"] == 2 and body["error"] is None
    assert body["content_type"] == "application/pdf" and body["filename"] == "invoice.pdf"
    detail = await client.get(f"/v1/documents/{body['document_id']}", headers=tenant.headers)
    assert [(p["page"], p["ocr"]) for p in detail.json()["pages"]] == [(1, False), (2, False)]
    first = await page_json(client, tenant, body["document_id"], 1)
    assert "Northwind Traders" in first["text"] and first["chars"] == len(first["text"].strip())
    second = await page_json(client, tenant, body["document_id"], 2)
    assert "thank you for your business" in second["text"]
    # The file is stored under the document's id, inside the account's folder.
    stored = harness.settings.storage_dir / tenant.account_id / body["document_id"]
    assert stored.read_bytes()[:5] == b"%PDF-"


async def test_scanned_pdf_is_read_by_tesseract(client, tenant):
    body = (await upload(client, tenant, scanned_pdf([INVOICE, "Second page: net 30"]))).json()
    assert body["status"] == "processed" and body["num_pages"] == 2
    first = await page_json(client, tenant, body["document_id"], 1)
    assert first["ocr"] is True
    assert "Northwind" in first["text"] and "Amount due" in first["text"]
    second = await page_json(client, tenant, body["document_id"], 2)
    assert second["ocr"] is True and "Second page" in second["text"]


async def test_a_text_layer_of_glyph_codes_is_replaced_by_ocr(client, tenant):
    data = scan_with_unreadable_text_layer(INVOICE)
    import pymupdf

    with pymupdf.open(stream=data) as doc:
        assert len(doc[0].get_text().strip()) > 500  # plenty of "text", none of it readable
    body = (await upload(client, tenant, data, "broken-font.pdf")).json()
    page = await page_json(client, tenant, body["document_id"], 1)
    assert page["ocr"] is True
    assert "Northwind" in page["text"] and "\x01" not in page["text"]


async def test_mixed_pdf_ocrs_only_pages_without_text(client, tenant):
    text_page = text_pdf(["A page with a real text layer and plenty of characters."])
    import pymupdf

    with pymupdf.open(stream=text_page) as doc, pymupdf.open(stream=scanned_pdf([INVOICE])) as scan:
        doc.insert_pdf(scan)
        data = doc.tobytes()
    body = (await upload(client, tenant, data, "mixed.pdf")).json()
    detail = (
        await client.get(f"/v1/documents/{body['document_id']}", headers=tenant.headers)
    ).json()
    assert [p["ocr"] for p in detail["pages"]] == [False, True]


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("TIFF", "image/tiff"),
        ("WEBP", "image/webp"),
    ],
)
async def test_images_are_read_by_tesseract(client, tenant, fmt, content_type):
    # The name says .bin: the type comes from the bytes.
    body = (await upload(client, tenant, image_bytes(fmt), "scan.bin")).json()
    assert body["status"] == "processed" and body["num_pages"] == 1
    assert body["content_type"] == content_type
    page = await page_json(client, tenant, body["document_id"], 1)
    assert page["ocr"] is True and "Northwind" in page["text"]


async def test_multi_frame_tiff_is_one_page_per_frame(client, tenant):
    body = (await upload(client, tenant, image_bytes("TIFF", "Frame text", frames=2))).json()
    assert body["status"] == "processed" and body["num_pages"] == 2
    second = await page_json(client, tenant, body["document_id"], 2)
    assert second["ocr"] is True and "Page 2" in second["text"]


async def test_text_file_is_split_into_pages_at_line_ends(client, tenant):
    lines = [f"line {i:04d} of a long text file" for i in range(400)]
    body = (await upload(client, tenant, "\n".join(lines).encode(), "notes.txt")).json()
    assert body["status"] == "processed" and body["content_type"] == "text/plain"
    assert body["num_pages"] >= 3
    texts = [
        (await page_json(client, tenant, body["document_id"], n))["text"]
        for n in range(1, body["num_pages"] + 1)
    ]
    assert all(len(t) <= 3000 for t in texts)
    assert "".join(texts).splitlines() == lines  # nothing lost, no line cut in two


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln: Rechnung über 12 €".encode(), "Grüße aus Köln"),
        ("Grüße aus Köln: Rechnung über 12 €".encode("utf-16"), "Grüße aus Köln"),
        ("Café crème, facture n° 12".encode("cp1252"), "Café crème"),
    ],
)
async def test_text_encodings(client, tenant, data, expected):
    body = (await upload(client, tenant, data, "note.txt")).json()
    assert body["status"] == "processed"
    assert expected in (await page_json(client, tenant, body["document_id"], 1))["text"]


async def test_upload_without_extract_then_extract(client, tenant):
    body = (await upload(client, tenant, scanned_pdf([INVOICE]), extract="false")).json()
    assert body["status"] == "uploaded" and body["num_pages"] == 1
    pending = await client.get(
        f"/v1/documents/{body['document_id']}/pages/1", headers=tenant.headers
    )
    assert pending.status_code == 400 and pending.json()["error"] == "document_not_processed"
    done = await client.post(f"/v1/documents/{body['document_id']}/extract", headers=tenant.headers)
    assert done.status_code == 200
    assert done.json()["status"] == "processed" and done.json()["pages"][0]["ocr"] is True
    # Extracting again replaces the pages instead of adding to them.
    again = await client.post(
        f"/v1/documents/{body['document_id']}/extract", headers=tenant.headers
    )
    assert [p["page"] for p in again.json()["pages"]] == [1]


@pytest.mark.parametrize(
    "overrides",
    [{"ocr_enabled": False}, {"ocr_language": "xyz"}],
    ids=["ocr-disabled", "language-data-missing"],
)
async def test_without_ocr_a_scan_is_processed_with_empty_pages(
    database_url, tmp_path, fake_backend, ocr_pool, overrides
):
    settings = make_settings(database_url, tmp_path, **overrides)
    async for harness in harness_with_pool(settings, [fake_backend], ocr_pool):
        tenant = await harness.tenant()
        body = (await upload(harness.client, tenant, scanned_pdf([INVOICE]))).json()
        assert body["status"] == "processed"
        page = await page_json(harness.client, tenant, body["document_id"], 1)
        assert page["ocr"] is False and page["text"].strip() == ""


async def test_a_dead_ocr_worker_does_not_break_later_uploads(settings, fake_backend):
    # The app's own pool, not the session's shared one: this test breaks it on purpose.
    async for harness in start_harness(settings, [fake_backend]):
        state = harness.app.state.docsift
        broken = state.executor
        # Kill a worker the hard way, as a Tesseract crash would: the pool is then unusable.
        os.kill(broken.submit(os.getpid).result(timeout=60), signal.SIGKILL)
        tenant = await harness.tenant()
        body = (await upload(harness.client, tenant, scanned_pdf([INVOICE]))).json()
        assert body["status"] == "processed"
        page = await page_json(harness.client, tenant, body["document_id"], 1)
        assert page["ocr"] is True and "Northwind" in page["text"]
        assert state.executor is not broken


async def test_png_of_text_fixture_has_no_text_layer():
    # Guards the OCR tests above: their text can only come from Tesseract.
    import pymupdf

    with pymupdf.open(stream=png_of_text(INVOICE)) as doc:
        assert doc[0].get_text().strip() == ""


async def test_a_slow_ocr_does_not_hold_the_database(client, tenant, monkeypatch):
    """Pages are read before the request writes anything: on SQLite the first write takes the
    only write lock until commit, so OCR after it would stall every other writer."""
    from backend.documents import service

    ocr_started, release = asyncio.Event(), asyncio.Event()

    async def slow_ocr(job, **_kwargs):  # noqa: ANN001, ANN003, ANN202
        ocr_started.set()
        await release.wait()
        return "text read slowly by OCR"

    monkeypatch.setattr(service, "_ocr_job", slow_ocr)
    scan = asyncio.create_task(upload(client, tenant, scanned_pdf([INVOICE]), "scan.pdf"))
    await asyncio.wait_for(ocr_started.wait(), 30)
    # Meanwhile another upload writes and commits; it would wait for the lock if the scan held it.
    other = await asyncio.wait_for(upload(client, tenant, text_pdf([INVOICE]), "text.pdf"), 20)
    assert other.status_code == 201 and not scan.done()
    release.set()
    body = (await scan).json()
    assert body["status"] == "processed"
    page = await page_json(client, tenant, body["document_id"], 1)
    assert page["ocr"] is True and page["text"] == "text read slowly by OCR"
