"""E-mails with attachments (children linked both ways), nesting and attachment limits, zips and
batches of e-mails; HTML as readable text; HEIC, EXIF orientation, Markdown and CSV."""

import io
import json

import pymupdf
import pytest
from PIL import Image

from tests.conftest import make_settings
from tests.documents.conftest import (
    assert_error,
    harness_with_pool,
    image_bytes,
    upload,
    zip_with_members,
)
from tests.documents.intake import SCHEMA, page_texts, wait_until_done
from tests.fixtures.documents import png_of_text, text_pdf
from tests.fixtures.formats import (
    docx_bytes,
    eml_bytes,
    heic_bytes,
    html_bytes,
    rotated_photo,
)


def _logo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), "blue").save(buffer, "PNG")
    return buffer.getvalue()


async def test_email_body_is_its_first_page_and_every_attachment_a_linked_child(client, tenant):
    scan = png_of_text("DELIVERY NOTE 88\nShipped to: Northwind Traders")
    data = eml_bytes(
        "Invoice 2024-117 attached",
        "Dear customer,\nplease find our invoice attached.\nRegards, Billing",
        [
            ("invoice-2024-117.pdf", "application/pdf", text_pdf(["INVOICE 2024-117 Total 99.00"])),
            ("contract.docx", "application/vnd.openxmlformats", docx_bytes("Framework contract")),
            ("delivery.png", "image/png", scan),
        ],
        inline_images=[_logo()],  # a small inline logo: not a document
    )
    response = await upload(client, tenant, data, "mail.eml")
    assert response.status_code == 201, response.text
    mail = response.json()
    assert mail["kind"] == "email" and mail["status"] == "processed" and mail["parent_id"] is None
    (first, *_) = await page_texts(client, tenant, mail)
    assert first.startswith("From: Billing <billing@supplier.example>")
    for expected in ("To: accounts@customer.example", "Subject: Invoice 2024-117 attached"):
        assert expected in first
    assert "please find our invoice attached" in first and "Date: " in first
    children = {c["filename"]: c for c in mail["children"]}
    assert list(children) == ["invoice-2024-117.pdf", "contract.docx", "delivery.png"]
    assert [c["kind"] for c in children.values()] == ["pdf", "office", "image"]
    assert children["invoice-2024-117.pdf"]["status"] == "processed"
    assert children["contract.docx"]["status"] == "processing"
    # Linked both ways, and each child processed by its own format.
    pdf = (
        await client.get(
            f"/v1/documents/{children['invoice-2024-117.pdf']['document_id']}",
            headers=tenant.headers,
        )
    ).json()
    assert pdf["parent_id"] == mail["document_id"]
    assert "INVOICE 2024-117" in (await page_texts(client, tenant, pdf))[0]
    docx = await wait_until_done(client, tenant, children["contract.docx"]["document_id"])
    assert docx["status"] == "processed" and docx["parent_id"] == mail["document_id"]
    image = (
        await client.get(
            f"/v1/documents/{children['delivery.png']['document_id']}", headers=tenant.headers
        )
    ).json()
    assert image["num_pages"] == 1
    # The list shows parents with their children, and the children themselves.
    listed = (await client.get("/v1/documents", headers=tenant.headers)).json()
    assert listed["total"] == 4
    by_id = {d["document_id"]: d for d in listed["items"]}
    assert len(by_id[mail["document_id"]]["children"]) == 3
    assert by_id[docx["document_id"]]["parent_id"] == mail["document_id"]
    # Classify and split work on the e-mail itself and on a child.
    for document_id in (mail["document_id"], pdf["document_id"], docx["document_id"]):
        for path in ("/v1/classify", "/v1/split"):
            result = await client.post(
                path,
                headers=tenant.headers,
                json={"document_id": document_id, "classification_schema": SCHEMA},
            )
            assert result.status_code == 200, (path, result.text)
    preview = await client.get(
        f"/v1/documents/{mail['document_id']}/pages/1/image", headers=tenant.headers
    )
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")


async def test_html_body_only_email_and_large_inline_image_kept(client, tenant):
    big = image_bytes("PNG", "Scanned receipt pasted into the mail")
    assert len(big) > 20_000
    data = eml_bytes(
        "Receipt",
        "",
        html="<html><body><p>Your <b>receipt</b> for order 42.</p><script>x()</script></body></html>",
        inline_images=[big],
    )
    mail = (await upload(client, tenant, data, "receipt.eml")).json()
    # The plain part is empty, so the HTML one is the body, as text.
    (first,) = await page_texts(client, tenant, mail)
    assert "Your receipt for order 42." in first and "<b>" not in first and "x()" not in first
    assert [c["kind"] for c in mail["children"]] == ["image"]


async def test_nested_emails_become_children_down_to_the_depth_limit(
    database_url, tmp_path, fake_backend, ocr_pool
):
    settings = make_settings(database_url, tmp_path, max_email_depth=1)
    async for harness in harness_with_pool(settings, [fake_backend], ocr_pool):
        client, tenant = harness.client, await harness.tenant()
        innermost = eml_bytes("Level 2", "too deep")
        middle = eml_bytes("Level 1", "forwarded", nested=[innermost])
        outer = eml_bytes(
            "Level 0",
            "see below",
            [("note.pdf", "application/pdf", text_pdf(["INVOICE 5"]))],
            nested=[middle],
        )
        mail = (await upload(client, tenant, outer, "outer.eml")).json()
        assert mail["status"] == "processed"
        kinds = [(c["filename"], c["kind"], c["status"]) for c in mail["children"]]
        assert kinds == [
            ("note.pdf", "pdf", "processed"),
            ("Level 1.eml", "email", "processed"),
        ]
        level1 = (
            await client.get(
                f"/v1/documents/{mail['children'][1]['document_id']}", headers=tenant.headers
            )
        ).json()
        assert "Subject: Level 1" in (await page_texts(client, tenant, level1))[0]
        (deep,) = level1["children"]
        assert (
            deep["status"] == "failed" and "nested 2 e-mails deep; the limit is 1" in deep["error"]
        )


async def test_email_with_500_attachments_is_refused_whole(client, tenant, harness):
    attachments = [(f"note-{i}.txt", "text/plain", f"note {i}".encode()) for i in range(500)]
    response = await upload(client, tenant, eml_bytes("Many", "x", attachments), "many.eml")
    assert_error(response, 413, "payload_too_large")
    assert "more than 100 attachments" in response.json()["message"]
    assert (await client.get("/v1/documents", headers=tenant.headers)).json()["total"] == 0
    folder = harness.settings.storage_dir / tenant.account_id
    assert not folder.exists() or not any(folder.iterdir())


async def test_zip_and_batch_of_emails(client, tenant):
    mails = {
        f"mail-{i}.eml": eml_bytes(
            f"Invoice {i}",
            "attached",
            [(f"inv-{i}.pdf", "application/pdf", text_pdf([f"INVOICE {i}"]))],
        )
        for i in range(3)
    }
    archive = zip_with_members(mails)
    listed = (await upload(client, tenant, archive, "mails.zip")).json()["documents"]
    assert [(d["kind"], len(d["children"])) for d in listed] == [("email", 1)] * 3
    response = await client.post(
        "/v1/batch-uploads",
        headers=tenant.headers,
        files={"file": ("mails.zip", archive)},
        data={"batch": json.dumps({"classification_schema": SCHEMA})},
    )
    assert response.status_code == 202, response.text
    started = response.json()
    # Every e-mail and every attachment is an item.
    assert started["total"] == 6 and len(started["documents"]) == 6
    import asyncio

    for _ in range(200):
        batch = (
            await client.get(f"/v1/batches/{started['batch_id']}", headers=tenant.headers)
        ).json()
        if batch["status"] == "completed":
            break
        await asyncio.sleep(0.2)
    assert batch["succeeded"] == 6, batch


async def test_html_is_readable_text_without_markup_scripts_or_fetches(client, tenant):
    data = html_bytes("Invoice #123", ("Website design", "$300.00"), ("Total", "$385.00"))
    response = await upload(client, tenant, data, "invoice.htm")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "html" and body["status"] == "processed" and body["num_pages"] == 1
    (text,) = await page_texts(client, tenant, body)
    assert "Invoice #123" in text and "Website design  $300.00" in text
    for absent in ("<td>", "SCRIPTTEXT", "color: red", "127.0.0.1"):
        assert absent not in text
    image = await client.get(
        f"/v1/documents/{body['document_id']}/pages/1/image", headers=tenant.headers
    )
    assert image.status_code == 200


async def test_long_html_is_one_page_per_3000_characters(client, tenant):
    rows = [(f"Item {i}", f"{i}.00 USD " + "x" * 40) for i in range(300)]
    body = (await upload(client, tenant, html_bytes("Statement", *rows), "s.html")).json()
    texts = await page_texts(client, tenant, body)
    assert body["num_pages"] == len(texts) >= 6
    assert all(len(t) <= 3000 for t in texts) and "Item 299" in texts[-1]


async def test_heic_photo_is_an_image_page(client, tenant):
    body = (await upload(client, tenant, heic_bytes((400, 200)), "IMG_0001.HEIC")).json()
    assert body["status"] == "processed", body
    assert body["kind"] == "image" and body["content_type"] == "image/heic"
    assert body["num_pages"] == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
async def test_exif_orientation_is_applied_before_ocr(client, tenant, harness, fmt):
    # 300x200 stored, EXIF 6: shown (and read) as 200 wide, 300 high.
    body = (await upload(client, tenant, rotated_photo(fmt), f"photo.{fmt.lower()}")).json()
    assert body["status"] == "processed", body
    stored = harness.settings.storage_dir / tenant.account_id / body["document_id"]
    from backend.documents.extraction import Limits, open_pdf
    from backend.documents.sniff import sniff

    data = stored.read_bytes()
    with open_pdf(data, sniff(data), Limits(10, 10**8)) as doc:
        page = doc[0]
        assert page.rect.width < page.rect.height
        pixmap = page.get_pixmap(dpi=72)
        assert pixmap.width < pixmap.height
    assert isinstance(page, pymupdf.Page)


async def test_multipage_tiff_markdown_and_csv(client, tenant):
    tiff = (await upload(client, tenant, image_bytes("TIFF", frames=3), "fax.tif")).json()
    assert tiff["num_pages"] == 3 and tiff["kind"] == "image"
    markdown = b"# Invoice 12\n\n| item | price |\n|---|---|\n| pens | 3.00 |\n"
    csv = b"date,description,amount\n2024-01-02,Coffee,3.50\n2024-01-03,Train,12.00\n"
    for name, data, marker in (("notes.md", markdown, "| pens | 3.00 |"), ("t.csv", csv, "Train")):
        body = (await upload(client, tenant, data, name)).json()
        assert body["kind"] == "text" and body["status"] == "processed"
        assert marker in (await page_texts(client, tenant, body))[0]
