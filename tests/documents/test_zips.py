"""Zips: one document per entry, hostile archives refused from their directory without being
inflated, odd entries kept as failed documents instead of vanishing."""

import zipfile

import pytest

from tests.documents.conftest import (
    INVOICE,
    MB,
    assert_error,
    deflated_zeros,
    handmade_zip,
    image_bytes,
    upload,
    zip_bomb,
    zip_with_members,
)
from tests.fixtures.documents import scanned_pdf, text_pdf


@pytest.fixture
def inflations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the zip entries the server starts inflating."""
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if mode == "r":  # building archives in the test writes through open() too
            opened.append(getattr(name, "filename", name))
        return original(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


@pytest.fixture(scope="module")
def gigabyte_bomb() -> bytes:
    bomb = zip_bomb(1024)
    assert len(bomb) < 2 * MB  # 1 GiB of zeros in about 1 MB
    return bomb


async def documents_of(response) -> dict[str, dict]:  # noqa: ANN001
    assert response.status_code == 201, response.text
    return {d["filename"]: d for d in response.json()["documents"]}


async def test_zip_gives_one_processed_document_per_entry(client, tenant, inflations):
    archive = zip_with_members(
        {
            "invoice.pdf": text_pdf([INVOICE]),
            "scans/scan.pdf": scanned_pdf([INVOICE]),
            "photo.jpg": image_bytes("JPEG"),
            "notes.txt": b"Plain text notes about the order, long enough to be a page.",
            "folder/": b"",
            "__MACOSX/._invoice.pdf": b"\x00\x05\x16\x07 apple double",
            ".DS_Store": b"\x00\x00\x00\x01Bud1",
        }
    )
    docs = await documents_of(await upload(client, tenant, archive, "batch.zip"))
    assert set(docs) == {"invoice.pdf", "scan.pdf", "photo.jpg", "notes.txt"}
    # Only document entries were inflated (this also shows the spy sees the server's reads).
    assert sorted(inflations) == ["invoice.pdf", "notes.txt", "photo.jpg", "scans/scan.pdf"]
    assert all(d["status"] == "processed" for d in docs.values())
    assert docs["photo.jpg"]["content_type"] == "image/jpeg"
    scan = docs["scan.pdf"]["document_id"]
    page = (await client.get(f"/v1/documents/{scan}/pages/1", headers=tenant.headers)).json()
    assert page["ocr"] is True and "Northwind" in page["text"]
    listed = (await client.get("/v1/documents", headers=tenant.headers)).json()
    assert listed["total"] == 4


async def test_zip_holding_an_uncompressed_pdf_is_a_zip(client, tenant):
    archive = zip_with_members(
        {"a.pdf": text_pdf([INVOICE]), "b.pdf": text_pdf([INVOICE])}, zipfile.ZIP_STORED
    )
    docs = await documents_of(await upload(client, tenant, archive, "stored.zip"))
    assert set(docs) == {"a.pdf", "b.pdf"}


async def test_entries_with_paths_keep_their_base_name_and_stay_in_storage(client, tenant, harness):
    archive = zip_with_members(
        {
            "../../etc/evil.pdf": text_pdf([INVOICE]),
            "/abs/path/root.pdf": text_pdf([INVOICE]),
            "..\\..\\windows\\win.pdf": text_pdf([INVOICE]),
        }
    )
    docs = await documents_of(await upload(client, tenant, archive, "paths.zip"))
    assert set(docs) == {"evil.pdf", "root.pdf", "win.pdf"}
    root = harness.settings.storage_dir.resolve()
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert sorted(p.name for p in stored) == sorted(d["document_id"] for d in docs.values())
    assert all(p.resolve().parent == root / tenant.account_id for p in stored)


async def test_unreadable_entries_become_failed_documents(client, tenant):
    inner = zip_with_members({"inner.pdf": text_pdf([INVOICE])})
    archive = zip_with_members(
        {
            "good.pdf": text_pdf([INVOICE]),
            "nested.zip": inner,
            "random.bin": bytes(range(256)) * 8,
            "empty.pdf": b"",
            "broken.pdf": text_pdf([INVOICE])[:200],
        }
    )
    docs = await documents_of(await upload(client, tenant, archive, "mixed.zip"))
    assert docs["good.pdf"]["status"] == "processed"
    for name in ("nested.zip", "random.bin", "empty.pdf", "broken.pdf"):
        assert docs[name]["status"] == "failed" and docs[name]["error"], name
    assert "zip" in docs["nested.zip"]["error"]
    # A failed entry has no file: extracting or previewing it is a clean 400.
    failed = docs["random.bin"]["document_id"]
    again = await client.post(f"/v1/documents/{failed}/extract", headers=tenant.headers)
    assert_error(again, 400, "unsupported_file")


async def test_gigabyte_zip_bomb_is_refused_without_inflating(
    client, tenant, gigabyte_bomb, inflations
):
    response = await upload(client, tenant, gigabyte_bomb, "bomb.zip")
    assert_error(response, 413, "payload_too_large")
    assert "1,024 MB" in response.json()["message"]
    assert inflations == []
    assert (await client.get("/v1/documents", headers=tenant.headers)).json()["total"] == 0


async def test_many_small_bombs_add_up_to_a_refusal(small, inflations):
    tenant = await small.tenant()
    data, crc = deflated_zeros(1)
    entries = [{"name": f"{i}.txt", "data": data, "crc": crc, "size": MB} for i in range(3)]
    response = await upload(small.client, tenant, handmade_zip(entries), "bombs.zip")
    assert_error(response, 413, "payload_too_large")  # 3 MB declared, limit 2 MB
    assert inflations == []


async def test_an_entry_over_the_upload_limit_fails_without_inflating(small, inflations):
    tenant = await small.tenant()
    # The whole 2 MB zip budget in one entry: over the 1 MB limit for a single file.
    archive = handmade_zip([{"name": "big.txt", **_zeros_entry(2)}])
    docs = await documents_of(await upload(small.client, tenant, archive, "big.zip"))
    assert docs["big.txt"]["status"] == "failed" and "limit" in docs["big.txt"]["error"]
    assert inflations == []


def _zeros_entry(megabytes: int) -> dict:
    data, crc = deflated_zeros(megabytes)
    return {"data": data, "crc": crc, "size": megabytes * MB}


async def test_an_entry_lying_about_its_size_is_cut_at_the_declared_size(client, tenant):
    # Declares 1,000 bytes, holds 8 MB of zeros: inflating stops at 1,000 and the entry fails.
    archive = zip_bomb(8, declared=1000, name="liar.txt")
    docs = await documents_of(await upload(client, tenant, archive, "liar.zip"))
    assert docs["liar.txt"]["status"] == "failed"
    assert "corrupt" in docs["liar.txt"]["error"]


async def test_an_encrypted_entry_fails_alone(client, tenant):
    data, crc = deflated_zeros(1)
    archive = handmade_zip(
        [{"name": "secret.txt", "data": data, "crc": crc, "size": MB, "flags": 1}]
    )
    docs = await documents_of(await upload(client, tenant, archive, "locked.zip"))
    assert docs["secret.txt"]["status"] == "failed" and "encrypted" in docs["secret.txt"]["error"]


async def test_too_many_entries_is_413(small, inflations):
    tenant = await small.tenant()
    archive = zip_with_members({f"{i}.txt": b"some text in a file" for i in range(4)})
    response = await upload(small.client, tenant, archive, "many.zip")
    assert_error(response, 413, "payload_too_large")
    assert "4 files" in response.json()["message"]
    assert inflations == []


async def test_a_directory_listing_far_more_than_the_limit_is_refused_unparsed(small):
    tenant = await small.tenant()
    archive = zip_with_members({f"d{i}/": b"" for i in range(50)})
    response = await upload(small.client, tenant, archive, "dirs.zip")
    assert_error(response, 413, "payload_too_large")
    assert "50 entries" in response.json()["message"]


@pytest.mark.parametrize(
    "archive",
    [zip_with_members({"folder/": b""}), zip_with_members({"__MACOSX/._a.pdf": b"x"})],
    ids=["only-folders", "only-macos-metadata"],
)
async def test_a_zip_without_documents_is_unsupported(client, tenant, archive):
    assert_error(await upload(client, tenant, archive, "x.zip"), 400, "unsupported_file")
