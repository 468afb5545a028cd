"""Reading documents back: detail, page text, previews, the list, deletion, and tenant isolation."""

import io

import pytest
from PIL import Image

from tests.documents.conftest import INVOICE, assert_error, image_bytes, upload
from tests.fixtures.documents import text_pdf


async def _upload_pdf(client, tenant, text: str = INVOICE) -> str:  # noqa: ANN001
    # Both pages have enough text to need no OCR.
    pages = [text, "The second page says thank you for your business."]
    response = await upload(client, tenant, text_pdf(pages), "doc.pdf")
    assert response.status_code == 201
    return response.json()["document_id"]


def _png_size(content: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG"
        return image.size


async def test_page_text_route_and_missing_pages(client, tenant):
    doc = await _upload_pdf(client, tenant)
    page = (await client.get(f"/v1/documents/{doc}/pages/1", headers=tenant.headers)).json()
    assert page["document_id"] == doc and page["page"] == 1 and "Northwind" in page["text"]
    assert_error(
        await client.get(f"/v1/documents/{doc}/pages/3", headers=tenant.headers), 404, "not_found"
    )
    assert_error(
        await client.get(f"/v1/documents/{doc}/pages/0", headers=tenant.headers),
        400,
        "invalid_request",
    )


async def test_pdf_preview_scales_with_dpi_and_caps_it(client, tenant):
    doc = await _upload_pdf(client, tenant)
    url = f"/v1/documents/{doc}/pages/2/image"
    default = await client.get(url, headers=tenant.headers)
    assert default.status_code == 200 and default.headers["content-type"] == "image/png"
    assert _png_size(default.content) == (612, 792)  # 72 dpi on a Letter page
    sharper = await client.get(url, params={"dpi": 144}, headers=tenant.headers)
    assert _png_size(sharper.content) == (1224, 1584)
    assert_error(
        await client.get(url, params={"dpi": 1000}, headers=tenant.headers), 400, "invalid_request"
    )
    assert_error(
        await client.get(f"/v1/documents/{doc}/pages/9/image", headers=tenant.headers),
        404,
        "not_found",
    )


async def test_text_and_image_documents_have_previews(client, tenant):
    text_doc = (await upload(client, tenant, b"Some plain text\n" * 50, "a.txt")).json()
    image_doc = (
        await upload(client, tenant, image_bytes("WEBP"), "b.webp", extract="false")
    ).json()
    for doc in (text_doc, image_doc):
        response = await client.get(
            f"/v1/documents/{doc['document_id']}/pages/1/image", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        width, height = _png_size(response.content)
        assert width > 100 and height > 100
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.convert("L").getextrema()[0] < 128  # something dark was drawn


async def test_list_is_paginated_newest_first(client, tenant):
    ids = [await _upload_pdf(client, tenant, f"document number {i}: {INVOICE}") for i in range(5)]
    first = (await client.get("/v1/documents?limit=2", headers=tenant.headers)).json()
    assert first["total"] == 5 and first["limit"] == 2 and first["offset"] == 0
    assert [d["document_id"] for d in first["items"]] == ids[::-1][:2]
    rest = (await client.get("/v1/documents?limit=2&offset=2", headers=tenant.headers)).json()
    assert [d["document_id"] for d in rest["items"]] == ids[::-1][2:4]
    assert set(first["items"][0]) >= {
        "document_id",
        "filename",
        "num_pages",
        "status",
        "error",
        "created_at",
        "content_type",
        "size_bytes",
    }
    assert_error(
        await client.get("/v1/documents?limit=500", headers=tenant.headers), 400, "invalid_request"
    )


async def test_delete_hides_the_document_and_removes_its_file(client, tenant, harness):
    doc = await _upload_pdf(client, tenant)
    stored = harness.settings.storage_dir / tenant.account_id / doc
    assert stored.exists()
    deleted = await client.delete(f"/v1/documents/{doc}", headers=tenant.headers)
    assert deleted.status_code == 200 and deleted.json() == {"document_id": doc, "deleted": True}
    assert not stored.exists()
    for method, path in _document_routes(doc):
        assert_error(await client.request(method, path, headers=tenant.headers), 404, "not_found")
    assert (await client.get("/v1/documents", headers=tenant.headers)).json()["total"] == 0


def _document_routes(doc: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v1/documents/{doc}"),
        ("GET", f"/v1/documents/{doc}/pages/1"),
        ("GET", f"/v1/documents/{doc}/pages/1/image"),
        ("POST", f"/v1/documents/{doc}/extract"),
        ("DELETE", f"/v1/documents/{doc}"),
    ]


async def test_another_accounts_document_is_404_everywhere(client, harness, tenant):
    doc = await _upload_pdf(client, tenant)
    intruder = await harness.tenant(name="intruder")
    for method, path in _document_routes(doc):
        response = await client.request(method, path, headers=intruder.headers)
        assert_error(response, 404, "not_found")
    assert (await client.get("/v1/documents", headers=intruder.headers)).json()["total"] == 0
    # The owner still has it, untouched by the attempts.
    assert (await client.get(f"/v1/documents/{doc}", headers=tenant.headers)).status_code == 200
    assert (harness.settings.storage_dir / tenant.account_id / doc).exists()


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../secret/passwd.pdf", "passwd.pdf"),
        ("C:\\Users\\me\\invoice.pdf", "invoice.pdf"),
        ("invoice\u202egpj.pdf", "invoicegpj.pdf"),  # right-to-left override stripped
        ("..", "upload"),
    ],
)
async def test_filenames_are_sanitized_and_never_used_for_storage(
    client, tenant, harness, sent, shown
):
    body = (await upload(client, tenant, text_pdf([INVOICE]), sent)).json()
    assert body["filename"] == shown
    root = harness.settings.storage_dir.resolve()
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert [p.relative_to(root).parts for p in stored] == [(tenant.account_id, body["document_id"])]


async def test_a_long_filename_is_cut_but_keeps_its_extension(client, tenant):
    body = (await upload(client, tenant, text_pdf([INVOICE]), "x" * 500 + ".pdf")).json()
    assert len(body["filename"]) == 200 and body["filename"].endswith("x.pdf")
