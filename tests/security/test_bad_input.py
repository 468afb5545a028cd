"""The bad-input battery: every case is a 4xx in the contract's format, and the server stays healthy.
Runs over real HTTP against a live server (see conftest.py), default limits."""

import io
import json
import zipfile

import httpx
import pymupdf
import pytest
from PIL import Image

from tests.fixtures.documents import text_pdf

# CI machines are busy: a slow answer is not a wrong one.
HTTP = httpx.Client(timeout=120)
SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


def _zip(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _many_pages(n: int) -> bytes:
    doc = pymupdf.open()
    for _ in range(n):
        doc.new_page(width=200, height=200)
    return doc.tobytes(garbage=4, deflate=True)


def _huge_image() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")
    return buffer.getvalue()


def _encrypted() -> bytes:
    doc = pymupdf.open(stream=text_pdf(["secret"]), filetype="pdf")
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")


UPLOADS = {
    "empty file": (b"", 400),
    "random bytes": (bytes(range(256)) * 64, 400),
    "truncated pdf": (text_pdf(["hello world"])[:200], 400),
    "encrypted pdf": (None, 400),
    "executable": (b"\x7fELF\x02\x01\x01" + b"\x00" * 200, 400),
    "25 MB over the limit": (b"%PDF-1.7\n" + b"0" * (25 * 2**20), 413),
    "zip bomb": (_zip({"zeros.txt": b"\x00" * (400 * 2**20)}), 413),
    "5000-page pdf": (None, 413),
    "20000x20000 image": (None, 413),
    "corrupt zip": (b"PK\x03\x04" + b"\xff" * 100, 400),
    "empty zip": (_zip({}), 400),
}
LAZY = {
    "encrypted pdf": _encrypted,
    "5000-page pdf": lambda: _many_pages(5000),
    "20000x20000 image": _huge_image,
}


@pytest.mark.parametrize("case", list(UPLOADS))
def test_bad_uploads(live_server, case):
    url, keys = live_server
    data, status = UPLOADS[case]
    data = LAZY[case]() if data is None else data
    response = HTTP.post(
        f"{url}/v1/documents",
        files={"file": ("upload.bin", data)},
        headers={"x-api-key": keys[0]},
    )
    _assert_error(response, status)
    assert HTTP.get(f"{url}/healthz").status_code == 200


def test_zip_with_parent_paths_and_path_filenames_are_stored_safely(live_server):
    url, keys = live_server
    archive = _zip(
        {"../../../../etc/passwd.pdf": text_pdf(["x"]), "/abs/path.pdf": text_pdf(["y"])}
    )
    response = HTTP.post(
        f"{url}/v1/documents",
        files={"file": ("../../evil.zip", archive)},
        headers={"x-api-key": keys[0]},
    )
    assert response.status_code == 201
    assert sorted(d["filename"] for d in response.json()["documents"]) == ["passwd.pdf", "path.pdf"]


def _document(url: str, key: str, pages: int = 2) -> str:
    response = HTTP.post(
        f"{url}/v1/documents",
        files={"file": ("a.pdf", text_pdf(["text"] * pages))},
        headers={"x-api-key": key},
    )
    return response.json()["document_id"]


def _classify_cases(doc: str) -> dict[str, tuple[object, int]]:
    base = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
    return {
        "malformed json": (b'{"document_id": ', 400),
        "json array": ([1, 2], 400),
        "wrong types": ({**base, "classification_schema": "invoice"}, 400),
        "document_id number": ({**base, "document_id": 5}, 400),
        "empty label": ({**base, "classification_schema": [{"label": ""}, {"label": "b"}]}, 400),
        "10000-character label": (
            {**base, "classification_schema": [{"label": "x" * 10000}, {"label": "b"}]},
            400,
        ),
        "duplicate labels": (
            {**base, "classification_schema": [{"label": "a"}, {"label": "a"}]},
            400,
        ),
        "one label": ({**base, "classification_schema": [{"label": "a"}]}, 400),
        "500 labels": (
            {**base, "classification_schema": [{"label": f"l{i}"} for i in range(500)]},
            400,
        ),
        "page_range zero": ({**base, "page_range": "0"}, 400),
        "page_range reversed": ({**base, "page_range": "2-1"}, 400),
        "page_range outside": ({**base, "page_range": "5-9"}, 400),
        "page_range text": ({**base, "page_range": "first"}, 400),
        "page_range negative": ({**base, "page_range": "-2"}, 400),
        "unknown document": ({**base, "document_id": "00000000-0000-0000-0000-000000000000"}, 404),
        "unknown model": ({**base, "query_model": "gpt-17"}, 400),
    }


def test_bad_classify_requests(live_server):
    url, keys = live_server
    doc = _document(url, keys[0])
    for name, (body, status) in _classify_cases(doc).items():
        if isinstance(body, bytes):
            response = HTTP.post(
                f"{url}/v1/classify",
                content=body,
                headers={"x-api-key": keys[0], "content-type": "application/json"},
            )
        else:
            response = HTTP.post(f"{url}/v1/classify", json=body, headers={"x-api-key": keys[0]})
        _assert_error(response, status, name)
    assert HTTP.get(f"{url}/healthz").status_code == 200


def test_missing_wrong_and_revoked_keys(live_server):
    url, keys = live_server
    new = HTTP.post(
        f"{url}/v1/account/keys", json={"name": "temp"}, headers={"x-api-key": keys[1]}
    ).json()
    HTTP.delete(f"{url}/v1/account/keys/{new['key_id']}", headers={"x-api-key": keys[1]})
    for headers in (
        {},
        {"x-api-key": ""},
        {"x-api-key": "dsk_" + "A" * 43},
        {"x-api-key": new["api_key"]},
    ):
        _assert_error(HTTP.get(f"{url}/v1/account", headers=headers), 403, str(headers))


def _assert_error(response: httpx.Response, status: int, name: str = "") -> None:
    assert response.status_code == status, (name, response.status_code, response.text[:300])
    body = response.json()
    assert body["success"] is False and body["error"] and body["message"], name
    assert "Traceback" not in json.dumps(body)
