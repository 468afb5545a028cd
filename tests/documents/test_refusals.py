"""Bad files are 400 unsupported_file, oversized ones 413 payload_too_large: never a 5xx, never a
stored file, and the server stays healthy."""

import io

import pymupdf
import pytest
from PIL import Image

from tests.documents.conftest import (
    INVOICE,
    MB,
    assert_error,
    blank_pdf,
    huge_png,
    image_bytes,
    pdf_with_huge_image,
    upload,
)
from tests.fixtures.documents import text_pdf


def _encrypted_pdf() -> bytes:
    with pymupdf.open(stream=text_pdf([INVOICE])) as doc:
        return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")


def _truncated_png() -> bytes:
    return image_bytes("PNG")[:200]


BAD_FILES = {
    "empty": b"",
    "whitespace": b"   \n\t  ",
    "random bytes": bytes(range(256)) * 40,
    "truncated pdf": text_pdf([INVOICE])[:300],
    "pdf header only": b"%PDF-1.7\n",
    "encrypted pdf": _encrypted_pdf(),
    "png magic then garbage": b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
    "truncated png": _truncated_png(),
    "jpeg magic then garbage": b"\xff\xd8\xff\xe0" + b"\x00" * 100,
    "corrupt zip": b"PK\x03\x04" + b"\x00" * 50,
    "gif": image_bytes("GIF"),
    "bmp": image_bytes("BMP"),
    "elf binary": b"\x7fELF\x02\x01\x01" + bytes(500),
}


@pytest.mark.parametrize("data", BAD_FILES.values(), ids=BAD_FILES.keys())
async def test_bad_files_are_unsupported_and_not_stored(client, tenant, harness, data):
    response = await upload(client, tenant, data, "invoice.pdf")
    assert_error(response, 400, "unsupported_file")
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/v1/documents", headers=tenant.headers)).json()["total"] == 0
    folder = harness.settings.storage_dir / tenant.account_id
    assert not folder.exists() or not any(folder.iterdir())


async def test_a_25_mb_upload_is_413_under_the_default_20_mb_limit(client, tenant, harness):
    assert harness.settings.max_upload_mb == 20
    response = await upload(client, tenant, b"%PDF-1.7\n" + bytes(25 * MB), "big.pdf")
    assert_error(response, 413, "payload_too_large")


async def test_a_5000_page_pdf_is_413_under_the_default_page_limit(client, tenant):
    response = await upload(client, tenant, blank_pdf(5000), "long.pdf")
    assert_error(response, 413, "payload_too_large")
    assert "5000 pages" in response.json()["message"]


async def test_a_20000x20000_image_is_refused_from_its_header(client, tenant):
    response = await upload(client, tenant, huge_png(20000, 20000), "huge.png")
    assert_error(response, 413, "payload_too_large")
    assert "400000000 pixels" in response.json()["message"]


async def test_a_pdf_drawing_a_20000x20000_image_is_refused_before_rendering(client, tenant):
    response = await upload(client, tenant, pdf_with_huge_image(20000, 20000), "bomb.pdf")
    assert_error(response, 413, "payload_too_large")
    assert "20000x20000" in response.json()["message"]


async def test_small_limits(small):
    tenant = await small.tenant()
    client = small.client
    # Over the 1 MB upload limit (the streaming case has its own test below).
    assert_error(await upload(client, tenant, bytes(2 * MB), "big.pdf"), 413, "payload_too_large")
    # Page limit (5) for PDFs, multi-frame images and text files.
    six_pages = await upload(client, tenant, text_pdf(["p"] * 6), "six.pdf")
    assert_error(six_pages, 413, "payload_too_large")
    assert "6 pages" in six_pages.json()["message"]
    five = await upload(client, tenant, text_pdf(["p"] * 5), "five.pdf", extract="false")
    assert five.status_code == 201 and five.json()["num_pages"] == 5
    frames = await upload(client, tenant, image_bytes("TIFF", frames=6), "six.tiff")
    assert_error(frames, 413, "payload_too_large")
    long_text = ("a line of text\n" * 1300).encode()  # ~19,500 characters: 7 pages
    assert_error(await upload(client, tenant, long_text, "long.txt"), 413, "payload_too_large")
    # Pixel limit (4 MP): 2001x2000 is over, 2000x2000 is not.
    over = io.BytesIO()
    Image.new("L", (2001, 2000), 255).save(over, "PNG")
    assert_error(await upload(client, tenant, over.getvalue(), "x.png"), 413, "payload_too_large")
    under = io.BytesIO()
    Image.new("L", (2000, 2000), 255).save(under, "PNG")
    assert (
        await upload(client, tenant, under.getvalue(), "y.png", extract="false")
    ).status_code == 201
    assert (await client.get("/healthz")).status_code == 200


async def test_upload_is_refused_while_streaming(small):
    """No Content-Length (chunked): the body is counted as it arrives and reading stops soon
    after the limit, instead of spooling all of it first."""
    tenant = await small.tenant()
    boundary = "docsift-test-boundary"
    chunks_sent = 0
    total_chunks = 100  # 100 x 64 KB = 6.4 MB against a 1 MB limit

    async def body():  # noqa: ANN202
        nonlocal chunks_sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        for _ in range(total_chunks):
            chunks_sent += 1
            yield b"%" * (64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await small.client.post(
        "/v1/documents",
        headers={**tenant.headers, "content-type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )
    assert_error(response, 413, "payload_too_large")
    assert chunks_sent < 20


async def test_declared_content_length_over_the_limit_is_refused_at_once(small):
    tenant = await small.tenant()
    response = await small.client.post(
        "/v1/documents",
        headers={
            **tenant.headers,
            "content-type": "multipart/form-data; boundary=x",
            "content-length": str(50 * MB),
        },
        content=b"--x--\r\n",
    )
    assert_error(response, 413, "payload_too_large")


async def test_missing_file_field_is_a_contract_400(client, tenant):
    response = await client.post(
        "/v1/documents", headers=tenant.headers, files={"other": ("a.pdf", b"x")}
    )
    assert_error(response, 400, "invalid_request")


async def test_a_scan_page_over_the_pixel_limit_is_not_ocrd(small):
    tenant = await small.tenant()
    # 4 MP limit: a page drawing a 2500x2000 (5 MP) image is refused, 2000x2000 is read.
    response = await upload(small.client, tenant, pdf_with_huge_image(2500, 2000), "scan.pdf")
    assert_error(response, 413, "payload_too_large")
    ok = await upload(small.client, tenant, pdf_with_huge_image(2000, 2000), "scan.pdf")
    assert ok.status_code == 201 and ok.json()["status"] == "processed"
