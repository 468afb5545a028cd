"""Uploads, extraction with OCR, pages and previews, limits and refusals, deletion, isolation."""

import io
import zipfile

import pymupdf
import pytest
from PIL import Image

from tests.conftest import make_settings, start_harness
from tests.fixtures.documents import png_of_text, scanned_pdf, text_pdf, zip_of

INVOICE = (
    "INVOICE 2024-117\nBill to: Northwind Traders\nAmount due: 1,250.00 USD\nPayment terms: net 30"
)


async def upload(client, tenant, data: bytes, name: str = "file.pdf", **params):
    return await client.post(
        "/v1/documents", headers=tenant.headers, files={"file": (name, data)}, params=params
    )


async def test_text_pdf_is_processed_with_page_text(client, tenant):
    response = await upload(
        client, tenant, text_pdf([INVOICE, "Page two: thank you for your business, Northwind"])
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "processed" and body["num_pages"] == 2
    detail = (
        await client.get(f"/v1/documents/{body['document_id']}", headers=tenant.headers)
    ).json()
    assert [(p["page"], p["ocr"]) for p in detail["pages"]] == [(1, False), (2, False)]
    page1 = (
        await client.get(f"/v1/documents/{body['document_id']}/pages/1", headers=tenant.headers)
    ).json()
    assert "Northwind Traders" in page1["text"] and page1["chars"] > 50


async def test_scanned_pdf_and_image_are_read_with_ocr(client, tenant):
    scan = (await upload(client, tenant, scanned_pdf([INVOICE]), "scan.pdf")).json()
    photo = (await upload(client, tenant, png_of_text(INVOICE), "photo.png")).json()
    for doc in (scan, photo):
        assert doc["status"] == "processed"
        page = (
            await client.get(f"/v1/documents/{doc['document_id']}/pages/1", headers=tenant.headers)
        ).json()
        assert page["ocr"] is True
        assert "Northwind" in page["text"] and "Amount due" in page["text"]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "WEBP"])
async def test_other_image_formats(client, tenant, fmt):
    image = Image.open(io.BytesIO(png_of_text(INVOICE))).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    body = (await upload(client, tenant, buffer.getvalue(), f"x.{fmt.lower()}")).json()
    assert body["status"] == "processed" and body["num_pages"] == 1
    assert body["content_type"] == f"image/{fmt.lower()}"


async def test_multi_frame_tiff_is_one_page_per_frame(client, tenant):
    frames = [
        Image.open(io.BytesIO(png_of_text(t))).convert("L") for t in ("first page", "second page")
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    body = (await upload(client, tenant, buffer.getvalue(), "two.tiff")).json()
    assert body["num_pages"] == 2


async def test_plain_text_is_split_into_pages(client, tenant):
    text = ("line of a long text file\n" * 300).encode()
    body = (await upload(client, tenant, text, "notes.txt")).json()
    assert body["status"] == "processed" and body["num_pages"] >= 2
    assert body["content_type"] == "text/plain"


async def test_upload_without_extract_then_extract(client, tenant):
    body = (await upload(client, tenant, text_pdf([INVOICE]), extract="false")).json()
    assert body["status"] == "uploaded"
    done = await client.post(f"/v1/documents/{body['document_id']}/extract", headers=tenant.headers)
    assert done.status_code == 200 and done.json()["status"] == "processed"


async def test_zip_gives_one_document_per_entry_and_keeps_failures(client, tenant):
    archive = zip_of(
        {
            "a/invoice.pdf": text_pdf([INVOICE]),
            "../../etc/evil.png": png_of_text("receipt"),
            "__MACOSX/._invoice.pdf": b"junk",
            "notes.bin": b"\x00\x01\x02\x03" * 10,
        }
    )
    response = await upload(client, tenant, archive, "batch.zip")
    assert response.status_code == 201
    docs = {d["filename"]: d for d in response.json()["documents"]}
    assert set(docs) == {"invoice.pdf", "evil.png", "notes.bin"}
    assert (
        docs["invoice.pdf"]["status"] == "processed" and docs["evil.png"]["status"] == "processed"
    )
    assert docs["notes.bin"]["status"] == "failed" and docs["notes.bin"]["error"]


async def test_zip_bomb_is_refused_without_inflating(client, tenant):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"\x00" * (300 * 2**20))  # 300 MB of zeros, ~300 KB zipped
    response = await upload(client, tenant, buffer.getvalue(), "bomb.zip")
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


async def test_filename_with_path_parts_is_kept_as_base_name_only(client, tenant, harness):
    body = (await upload(client, tenant, text_pdf([INVOICE]), "../../secret/..\\x.pdf")).json()
    assert body["filename"] == "x.pdf"
    stored = list((harness.settings.storage_dir).rglob("*"))
    assert all("secret" not in str(p) and ".." not in p.name for p in stored)


def _encrypted_pdf() -> bytes:
    doc = pymupdf.open(stream=text_pdf([INVOICE]), filetype="pdf")
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.pdf", b""),
        ("random.bin", bytes(range(256)) * 40),
        ("truncated.pdf", text_pdf([INVOICE])[:300]),
        ("encrypted.pdf", None),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),
        ("corrupt.zip", b"PK\x03\x04" + b"\x00" * 50),
    ],
)
async def test_bad_files_are_unsupported_file(client, tenant, name, data):
    data = _encrypted_pdf() if data is None else data
    response = await upload(client, tenant, data, name)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unsupported_file" and response.json()["message"]
    assert (await client.get("/healthz")).status_code == 200


@pytest.fixture
async def small_limits(database_url, tmp_path, fake_backend):
    settings = make_settings(
        database_url, tmp_path, max_upload_mb=1, max_pages=5, max_image_pixels=4_000_000
    )
    async for harness in start_harness(settings, [fake_backend]):
        yield harness


async def test_limits_give_413(small_limits):
    tenant = await small_limits.tenant()
    client = small_limits.client
    big = await upload(client, tenant, b"%PDF-1.7\n" + b"0" * (2 * 2**20), "big.pdf")
    assert big.status_code == 413 and big.json()["error"] == "payload_too_large"
    many = await upload(client, tenant, text_pdf(["p"] * 6), "six.pdf")
    assert many.status_code == 413
    huge = Image.new("L", (20000, 20000))
    buffer = io.BytesIO()
    huge.save(buffer, "PNG")
    assert len(buffer.getvalue()) < 2**20
    refused = await upload(client, tenant, buffer.getvalue(), "huge.png")
    assert refused.status_code == 413 and "pixels" in refused.json()["message"]


async def test_page_preview_is_a_png(client, tenant):
    doc = (await upload(client, tenant, text_pdf([INVOICE]))).json()
    response = await client.get(
        f"/v1/documents/{doc['document_id']}/pages/1/image", headers=tenant.headers
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size[0] > 100
    missing = await client.get(
        f"/v1/documents/{doc['document_id']}/pages/9/image", headers=tenant.headers
    )
    assert missing.status_code == 404


async def test_list_paginates_and_delete_hides(client, tenant):
    ids = [
        (await upload(client, tenant, text_pdf([f"doc {i}"]))).json()["document_id"]
        for i in range(3)
    ]
    first = (await client.get("/v1/documents?limit=2", headers=tenant.headers)).json()
    assert first["total"] == 3 and len(first["items"]) == 2
    assert first["items"][0]["document_id"] == ids[-1]
    deleted = await client.delete(f"/v1/documents/{ids[0]}", headers=tenant.headers)
    assert deleted.status_code == 200
    assert (await client.get(f"/v1/documents/{ids[0]}", headers=tenant.headers)).status_code == 404
    assert (await client.get("/v1/documents", headers=tenant.headers)).json()["total"] == 2


async def test_another_accounts_document_is_404_everywhere(client, harness, tenant):
    doc_id = (await upload(client, tenant, text_pdf([INVOICE]))).json()["document_id"]
    other = await harness.tenant(name="intruder")
    for method, path in [
        ("GET", f"/v1/documents/{doc_id}"),
        ("GET", f"/v1/documents/{doc_id}/pages/1"),
        ("GET", f"/v1/documents/{doc_id}/pages/1/image"),
        ("POST", f"/v1/documents/{doc_id}/extract"),
        ("DELETE", f"/v1/documents/{doc_id}"),
    ]:
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert (await client.get("/v1/documents", headers=other.headers)).json()["total"] == 0
    assert (await client.get(f"/v1/documents/{doc_id}", headers=tenant.headers)).status_code == 200


def test_display_name_strips_paths_and_control_characters():
    from backend.documents.service import display_name

    assert display_name("../../a/b\\c\x01d.pdf") == "cd.pdf"
    assert display_name("") == "upload" and len(display_name("x" * 500)) == 200


async def test_zip_holding_an_uncompressed_pdf_is_a_zip(client, tenant):
    import io as _io

    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.pdf", text_pdf([INVOICE]))
        archive.writestr("b.pdf", text_pdf([INVOICE]))
    response = await upload(client, tenant, buffer.getvalue(), "stored.zip")
    assert response.status_code == 201 and len(response.json()["documents"]) == 2
