"""Office files over HTTP: detected by content, never unpacked as archives, converted by
LibreOffice on the task queue (status `processing`, then `processed`), with real pages, page
images, classification and split; what is refused, and what a document still converting does."""

import io
import json
import zipfile

import msoffcrypto
import pytest
from msoffcrypto.format.ooxml import OOXMLFile

from tests.conftest import make_settings
from tests.documents.conftest import (
    assert_error,
    deflated_zeros,
    handmade_zip,
    harness_with_pool,
    upload,
    zip_with_members,
)
from tests.documents.intake import SCHEMA, alive, page_texts, wait_until_done
from tests.fixtures.documents import text_pdf
from tests.fixtures.formats import (
    docx_bytes,
    odp_bytes,
    ods_bytes,
    odt_bytes,
    pptx_bytes,
    rtf_bytes,
    xlsx_bytes,
)


async def test_docx_is_one_document_converted_on_the_queue_with_pages_images_and_credits(
    client, tenant
):
    data = docx_bytes("INVOICE 2024-117", "Bill to: Northwind Traders", "Amount due: 1,250.00")
    response = await upload(client, tenant, data, "invoice.docx")
    assert response.status_code == 201, response.text
    body = response.json()
    # One document (never the zip's parts), answered before the conversion has run.
    assert "documents" not in body
    assert body["status"] == "processing" and body["kind"] == "office"
    assert body["content_type"].endswith("wordprocessingml.document")
    done = await wait_until_done(client, tenant, body["document_id"])
    assert done["status"] == "processed", done["error"]
    assert done["num_pages"] == 1 and done["processed_at"]
    (text,) = await page_texts(client, tenant, done)
    assert "Northwind Traders" in text and "1,250.00" in text
    image = await client.get(
        f"/v1/documents/{done['document_id']}/pages/1/image", headers=tenant.headers
    )
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    classified = await client.post(
        "/v1/classify",
        headers=tenant.headers,
        json={"document_id": done["document_id"], "classification_schema": SCHEMA},
    )
    assert classified.status_code == 200, classified.text
    assert classified.json()["num_pages"] == 1 and classified.json()["credits_used"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "make", "pages", "marker"),
    [
        (
            "book.xlsx",
            lambda: xlsx_bytes({"Q1": [["Revenue", 100]], "Q2": [["Costs", 42]]}),
            2,
            "Costs",
        ),
        (
            "deck.pptx",
            lambda: pptx_bytes(("Quarterly review", "Sales up"), ("Plan", "Hire")),
            2,
            "Hire",
        ),
        ("letter.odt", lambda: odt_bytes("Dear customer,", "your contract renews."), 1, "renews"),
        ("sheets.ods", lambda: ods_bytes({"A": [["alpha"]], "B": [["beta"]]}), 2, "beta"),
        ("slides.odp", lambda: odp_bytes("first slide", "second slide"), 2, "second slide"),
        ("terms.rtf", lambda: rtf_bytes("Loan agreement", "Interest: 5%"), 1, "Interest"),
    ],
)
async def test_each_office_format_becomes_pages_never_archive_entries(
    client, tenant, name, make, pages, marker
):
    # The name says nothing: the content does (a spreadsheet called .zip is still converted).
    response = await upload(client, tenant, make(), name.rsplit(".", 1)[0] + ".zip")
    assert response.status_code == 201, response.text
    body = response.json()
    assert "documents" not in body and body["kind"] == "office"
    done = await wait_until_done(client, tenant, body["document_id"])
    assert done["status"] == "processed", done["error"]
    # Spreadsheets: a page per sheet; presentations: a page per slide.
    assert done["num_pages"] == pages
    assert marker in "\n".join(await page_texts(client, tenant, done))


async def test_zip_of_office_files_and_a_pdf(client, tenant):
    archive = zip_with_members(
        {
            "contract.docx": docx_bytes("Service agreement between ACME and Globex"),
            "rates.xlsx": xlsx_bytes({"Rates": [["Destination", "USD"], ["France", 0.02]]}),
            "invoice.pdf": text_pdf(["INVOICE 7"]),
        }
    )
    response = await upload(client, tenant, archive, "inbox.zip")
    assert response.status_code == 201, response.text
    documents = {d["filename"]: d for d in response.json()["documents"]}
    assert documents.keys() == {"contract.docx", "rates.xlsx", "invoice.pdf"}
    assert documents["invoice.pdf"]["status"] == "processed"
    for name in ("contract.docx", "rates.xlsx"):
        assert documents[name]["status"] == "processing"
        done = await wait_until_done(client, tenant, documents[name]["document_id"])
        assert done["status"] == "processed" and done["num_pages"] == 1, done


async def test_batch_upload_of_office_files_waits_for_their_conversion(client, tenant):
    archive = zip_with_members(
        {
            "a.docx": docx_bytes("INVOICE 1"),
            "b.pdf": text_pdf(["INVOICE 2"]),
            "c.docx": docx_bytes("INVOICE 3"),
        }
    )
    response = await client.post(
        "/v1/batch-uploads",
        headers=tenant.headers,
        files={"file": ("inbox.zip", archive)},
        data={"batch": json.dumps({"classification_schema": SCHEMA})},
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["total"] == 3
    # Only the PDF's page is known up front: converting documents are not in the estimate.
    assert started["credits_estimate"] == 1
    batch = await _wait_for_batch(client, tenant, started["batch_id"])
    assert batch["succeeded"] == 3 and batch["failed"] == 0, batch["items"]
    assert batch["credits_used"] == 3


async def _wait_for_batch(client, tenant, batch_id):  # noqa: ANN001, ANN202
    import asyncio
    import time

    deadline = time.monotonic() + 240
    while True:
        batch = (await client.get(f"/v1/batches/{batch_id}", headers=tenant.headers)).json()
        if batch["status"] == "completed":
            return batch
        assert time.monotonic() < deadline, batch
        await asyncio.sleep(0.5)


# --- refused up front: encrypted, corrupt, bombs --------------------------------------------


def _encrypted_docx() -> bytes:
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(docx_bytes("secret"))).encrypt("password", out)
    encrypted = out.getvalue()
    assert msoffcrypto.OfficeFile(io.BytesIO(encrypted)).is_encrypted()
    return encrypted


def _docx_with_extra_part(name: str, data: bytes, crc: int, size: int) -> bytes:
    """A real docx with one more deflated part appended, written field by field so its header
    may lie about its size."""
    with zipfile.ZipFile(io.BytesIO(docx_bytes("INVOICE"))) as source:
        entries = []
        for info in source.infolist():
            raw = source.read(info)
            import zlib

            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            deflated = compressor.compress(raw) + compressor.flush()
            entries.append(
                {"name": info.filename, "data": deflated, "crc": zlib.crc32(raw), "size": len(raw)}
            )
    entries.append({"name": name, "data": data, "crc": crc, "size": size})
    return handmade_zip(entries)


@pytest.mark.parametrize(
    ("make", "status", "code", "words"),
    [
        (_encrypted_docx, 400, "unsupported_file", "encrypted"),
        (lambda: odt_bytes("secret", encrypted=True), 400, "unsupported_file", "encrypted"),
        (lambda: docx_bytes("INVOICE")[:-200], 400, "unsupported_file", "corrupt"),
        # 300 MB of zeros declared honestly: refused from the directory alone.
        (
            lambda: _docx_with_extra_part("word/media/zeros.bin", *_zeros(300)),
            413,
            "payload_too_large",
            "expand",
        ),
        # A directory that lies (1 KB declared, 300 MB inside): inflating stops at the declared
        # size, and the part is refused before LibreOffice (which would inflate it all) sees it.
        (
            lambda: _docx_with_extra_part("word/media/zeros.bin", *_zeros(300, declared=1024)),
            400,
            "unsupported_file",
            "corrupt",
        ),
    ],
    ids=["encrypted-docx", "encrypted-odt", "truncated-docx", "bomb", "lying-bomb"],
)
async def test_refused_office_files_are_clear_4xx_and_store_nothing(
    client, tenant, harness, make, status, code, words
):
    response = await upload(client, tenant, make(), "file.docx")
    assert_error(response, status, code)
    assert words in response.json()["message"]
    listed = await client.get("/v1/documents", headers=tenant.headers)
    assert listed.json()["total"] == 0
    folder = harness.settings.storage_dir / tenant.account_id
    assert not folder.exists() or not any(folder.iterdir())


def _zeros(megabytes: int, declared: int | None = None) -> tuple[bytes, int, int]:
    data, crc = deflated_zeros(megabytes)
    return data, crc, megabytes << 20 if declared is None else declared


async def test_unreadable_office_file_fails_with_its_reason_and_cannot_be_classified(
    client, tenant
):
    # A valid zip with a broken main part: only LibreOffice can tell, after the upload.
    with zipfile.ZipFile(io.BytesIO(docx_bytes("x"))) as source:
        parts = {i.filename: source.read(i) for i in source.infolist()}
    parts["word/document.xml"] = b"<w:document><not xml"
    broken = zip_with_members(parts)
    body = (await upload(client, tenant, broken, "broken.docx")).json()
    assert body["status"] == "processing"
    done = await wait_until_done(client, tenant, body["document_id"])
    if done["status"] == "failed":
        assert "could not convert" in done["error"]
        refused = await client.post(
            "/v1/classify",
            headers=tenant.headers,
            json={"document_id": done["document_id"], "classification_schema": SCHEMA},
        )
        assert_error(refused, 400, "document_not_processed")
        account = (await client.get("/v1/account", headers=tenant.headers)).json()
        assert account["balance"] == 1000
    else:  # LibreOffice salvaged an (empty) page: still a document with pages, never stuck
        assert done["status"] == "processed" and done["num_pages"] >= 1


# --- a document still converting, a conversion over the time limit ---------------------------


@pytest.fixture
def slow_converter(tmp_path):
    """A stand-in for soffice.bin that never finishes (and starts a grandchild, which must die
    with it)."""
    script = tmp_path / "soffice.bin"
    pids = tmp_path / "pids"
    script.write_text(f"#!/bin/sh\necho $$ >> {pids}\nsleep 300 &\necho $! >> {pids}\nwait\n")
    script.chmod(0o755)
    return script, pids


@pytest.fixture
async def slow_harness(database_url, tmp_path, fake_backend, ocr_pool, slow_converter):
    script, _ = slow_converter
    settings = make_settings(
        database_url,
        tmp_path,
        libreoffice_path=str(script),
        conversion_timeout_seconds=3,
    )
    async for h in harness_with_pool(settings, [fake_backend], ocr_pool):
        yield h


async def test_still_converting_is_a_clear_400_then_the_time_limit_fails_it(
    slow_harness, slow_converter
):
    client = slow_harness.client
    tenant = await slow_harness.tenant()
    body = (await upload(client, tenant, docx_bytes("INVOICE"), "slow.docx")).json()
    assert body["status"] == "processing"
    document_id = body["document_id"]
    for path, payload in (
        ("/v1/classify", {"document_id": document_id, "classification_schema": SCHEMA}),
        ("/v1/split", {"document_id": document_id, "classification_schema": SCHEMA}),
    ):
        response = await client.post(path, headers=tenant.headers, json=payload)
        assert_error(response, 400, "document_not_processed")
        assert "still being converted" in response.json()["message"]
    image = await client.get(f"/v1/documents/{document_id}/pages/1/image", headers=tenant.headers)
    assert_error(image, 400, "document_not_processed")
    done = await wait_until_done(client, tenant, document_id, wait=60)
    assert done["status"] == "failed" and "3 s limit" in done["error"]
    # The converter and the process it started were killed with their process group.
    _, pids = slow_converter
    for pid in map(int, pids.read_text().split()):
        assert not alive(pid), f"process {pid} outlived its conversion"
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 1000  # nothing billed


async def test_delete_removes_the_upload_and_its_pdf(client, tenant, harness):
    body = (await upload(client, tenant, docx_bytes("INVOICE"), "x.docx")).json()
    await wait_until_done(client, tenant, body["document_id"])
    folder = harness.settings.storage_dir / tenant.account_id
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [body["document_id"], body["document_id"] + ".pdf"]
    )
    deleted = await client.delete(f"/v1/documents/{body['document_id']}", headers=tenant.headers)
    assert deleted.status_code == 200
    assert not any(folder.iterdir())
