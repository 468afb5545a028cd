"""Helpers for the document tests: uploads, hostile files built in code (zip bombs, pixel bombs),
and an app with small limits."""

import io
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx
import pymupdf
import pytest
from PIL import Image

from backend.config import Settings
from backend.documents import ocr
from tests.conftest import Harness, Tenant, make_settings, start_harness
from tests.fixtures.documents import png_of_text

INVOICE = (
    "INVOICE 2024-117\nBill to: Northwind Traders\nAmount due: 1,250.00 USD\nPayment terms: net 30"
)
MB = 1 << 20


async def upload(
    client: httpx.AsyncClient, tenant: Tenant, data: bytes, name: str = "file.pdf", **params: Any
) -> httpx.Response:
    return await client.post(
        "/v1/documents", headers=tenant.headers, files={"file": (name, data)}, params=params
    )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error body with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == code and body["message"]


def image_bytes(fmt: str, text: str = INVOICE, frames: int = 1) -> bytes:
    """A picture of text (no text layer) in `fmt`; several frames make a multi-page TIFF."""
    pages = [Image.open(io.BytesIO(png_of_text(f"{text}\nPage {i + 1}"))) for i in range(frames)]
    pages = [p.convert("RGB") for p in pages]
    buffer = io.BytesIO()
    # 150 dpi, as png_of_text renders: a Letter-sized page, like a scanner would record.
    pages[0].save(buffer, fmt, dpi=(150, 150), save_all=frames > 1, append_images=pages[1:])
    return buffer.getvalue()


def deflated_zeros(megabytes: int) -> tuple[bytes, int]:
    """A raw deflate stream of `megabytes` MiB of zeros and its CRC-32, built in milliseconds:
    one compressed MiB ends with a full flush, so copies of it concatenate into a valid stream."""
    zeros = bytes(MB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    return block * megabytes + final, crc


def handmade_zip(entries: list[dict[str, Any]]) -> bytes:
    """A zip written field by field, so tests can make what zipfile refuses to write: an entry
    that lies about its size, or one flagged encrypted. Each entry: name, data (deflated bytes),
    crc, size (declared uncompressed size), and optional flags."""
    out, central = bytearray(), bytearray()
    for entry in entries:
        name = entry["name"].encode()
        fields = (20, entry.get("flags", 0), 8, 0, 0x21, entry["crc"], len(entry["data"]))
        offset = len(out)
        out += struct.pack("<IHHHHHII", 0x04034B50, *fields)
        out += struct.pack("<IHH", entry["size"], len(name), 0) + name + entry["data"]
        central += struct.pack("<IHHHHHHII", 0x02014B50, 20, *fields)
        central += struct.pack("<IHHHHHII", entry["size"], len(name), 0, 0, 0, 0, 0, offset)
        central += name
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    return bytes(out + central + end)


def zip_bomb(megabytes: int, *, declared: int | None = None, name: str = "zeros.txt") -> bytes:
    data, crc = deflated_zeros(megabytes)
    size = megabytes * MB if declared is None else declared
    return handmade_zip([{"name": name, "data": data, "crc": crc, "size": size}])


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of `width`x`height` black pixels: a few KB on disk, width*height
    pixels once decoded."""
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def pdf_with_huge_image(width: int, height: int) -> bytes:
    """A one-page PDF drawing a `width`x`height` image it stores compressed (never decoded
    here): rendering it would allocate width*height bytes."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    row = bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    xref = doc.get_new_xref()
    doc.update_object(
        xref,
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} "
        "/ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /FlateDecode >>",
    )
    doc.update_stream(xref, stream, compress=False)
    contents = doc.get_new_xref()
    doc.update_object(contents, "<< >>")
    doc.update_stream(contents, b"q 612 0 0 792 0 0 cm /Im0 Do Q")
    doc.xref_set_key(page.xref, "Contents", f"{contents} 0 R")
    doc.xref_set_key(page.xref, "Resources", f"<< /XObject << /Im0 {xref} 0 R >> >>")
    data = doc.tobytes()
    doc.close()
    return data


def zip_with_members(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def ocr_pool() -> Iterator[ProcessPoolExecutor]:
    """One OCR worker pool for the whole session: a fresh worker spends seconds importing
    PyMuPDF, which every app's own pool would pay again."""
    pool = ocr.make_pool(2)
    yield pool
    pool.shutdown(cancel_futures=True)


async def harness_with_pool(
    settings: Settings, backends: list[Any], pool: ProcessPoolExecutor
) -> AsyncIterator[Harness]:
    async for harness in start_harness(settings, backends):
        state = harness.app.state.docsift
        own, state.executor = state.executor, pool
        yield harness
        if state.executor is pool:  # the app shuts its own pool down, never the shared one
            state.executor = own


@pytest.fixture
async def harness(
    settings: Settings, fake_backend: Any, extra_backends: list[Any], ocr_pool: Any
) -> AsyncIterator[Harness]:
    async for h in harness_with_pool(settings, [fake_backend, *extra_backends], ocr_pool):
        yield h


@pytest.fixture
async def small(
    database_url: str, tmp_path: Any, fake_backend: Any, ocr_pool: Any
) -> AsyncIterator[Harness]:
    """An app with small limits: 1 MB uploads, 5 pages, 4 MP images, 3 zip files of 2 MB."""
    settings = make_settings(
        database_url,
        tmp_path,
        max_upload_mb=1,
        max_pages=5,
        max_image_pixels=4_000_000,
        max_zip_entries=3,
        max_zip_uncompressed_mb=2,
    )
    async for harness in harness_with_pool(settings, [fake_backend], ocr_pool):
        yield harness


def blank_pdf(pages: int) -> bytes:
    """A valid PDF of `pages` blank pages, written directly (PyMuPDF needs seconds for 5,000)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (3 + i) for i in range(pages))
        + b"] /Count %d >>" % pages,
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
