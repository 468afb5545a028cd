"""Encryption at rest: with DOCSIFT_ENCRYPTION_KEY set no stored byte is readable; documents
still work; key rotation re-encrypts every file; a missing or wrong key is a clear error."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from backend.documents import crypto
from backend.documents.storage import FileStore
from tests.conftest import REPO_ROOT, make_settings, start_harness
from tests.fixtures.documents import text_pdf
from tests.fixtures.formats import eml_bytes


def stored(settings) -> list:
    return [p for p in settings.storage_dir.rglob("*") if p.is_file()]


async def upload_mail(harness, tenant, token: str) -> dict:
    data = eml_bytes(
        f"About {token}",
        f"Body {token}",
        [("a.pdf", "application/pdf", text_pdf([f"INVOICE {token}"]))],
    )
    r = await harness.client.post(
        "/v1/documents", headers=tenant.headers, files={"file": ("m.eml", data)}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_files_are_encrypted_and_still_served(database_url, tmp_path, fake_backend):
    key = crypto.generate_key()
    settings = make_settings(database_url, tmp_path, encryption_key=key)
    token = f"enc{uuid.uuid4().hex}"
    async for harness in start_harness(settings, [fake_backend]):
        tenant = await harness.tenant()
        mail = await upload_mail(harness, tenant, token)
        child = mail["children"][0]["document_id"]
        files = stored(settings)
        assert len(files) >= 3  # the e-mail, its text rendition, the attachment
        for path in files:
            raw = path.read_bytes()
            assert raw.startswith(crypto.MAGIC)
            assert token.encode() not in raw and b"%PDF" not in raw
        # Re-extracting reads (decrypts) the stored file; the page image renders from it.
        r = await harness.client.post(f"/v1/documents/{child}/extract", headers=tenant.headers)
        assert r.status_code == 200, r.text
        page = await harness.client.get(f"/v1/documents/{child}/pages/1", headers=tenant.headers)
        assert token in page.json()["text"]
        image = await harness.client.get(
            f"/v1/documents/{child}/pages/1/image", headers=tenant.headers
        )
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

    # The same files without the key, or with another key: a clear error, never garbage.
    for other in ("", crypto.generate_key()):
        settings = make_settings(database_url, tmp_path, encryption_key=other)
        async for harness in start_harness(settings, [fake_backend]):
            r = await harness.client.post(
                f"/v1/documents/{child}/extract",
                headers={"x-api-key": tenant.api_key},
            )
            assert r.status_code == 500
            body = r.json()
            assert body["error"] == "internal_error"
            assert "DOCSIFT_ENCRYPTION_KEY" in body["message"]


def test_tampering_is_detected(tmp_path):
    cipher = crypto.Cipher.from_setting(crypto.generate_key())
    store = FileStore(tmp_path, cipher)
    path = store.save("acct", "doc", b"secret text")
    assert store.read(path) == b"secret text"
    raw = bytearray((tmp_path / path).read_bytes())
    raw[-1] ^= 1
    (tmp_path / path).write_bytes(bytes(raw))
    with pytest.raises(crypto.UnreadableFile, match="failed authentication"):
        store.read(path)
    # A file moved over another document's does not decrypt either (the path is bound in).
    good = store.save("acct", "doc2", b"other")
    (tmp_path / "acct" / "doc3").write_bytes((tmp_path / good).read_bytes())
    with pytest.raises(crypto.UnreadableFile):
        store.read("acct/doc3")


@pytest.mark.parametrize("value", ["not base64!", "c2hvcnQ="], ids=["not-base64", "short-key"])
def test_a_malformed_key_is_named(value):
    with pytest.raises(ValueError, match="DOCSIFT_ENCRYPTION_KEY: key 1"):
        crypto.Cipher.from_setting(value)


def test_rotation_with_the_cli(tmp_path):
    old, new = crypto.generate_key(), crypto.generate_key()
    files = tmp_path / "files"
    FileStore(files).save("acct", "plain", b"written before encryption was on")
    FileStore(files, crypto.Cipher.from_setting(old)).save("acct", "doc", b"under the old key")

    def cli(key: str) -> dict:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "DOCSIFT_STORAGE_DIR": str(files),
            "DOCSIFT_ENCRYPTION_KEY": key,
        }
        out = subprocess.run(
            [sys.executable, "-m", "backend.cli", "encryption", "rotate", "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    assert cli(f"{new},{old}") == {"rewritten": 2, "already_current": 0}
    assert cli(f"{new},{old}") == {"rewritten": 0, "already_current": 2}
    only_new = FileStore(files, crypto.Cipher.from_setting(new))  # the old key dropped
    assert only_new.read("acct/doc") == b"under the old key"
    assert only_new.read("acct/plain") == b"written before encryption was on"
    with pytest.raises(crypto.UnreadableFile, match="does not hold"):
        FileStore(files, crypto.Cipher.from_setting(old)).read("acct/doc")
