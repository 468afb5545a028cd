"""Every file of ../shared/datasets/formats-v1 through the API: it reaches `processed` with pages
and readable text, no Office file is unpacked as an archive, and every attachment of every e-mail
is a child document."""

import csv
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.documents.conftest import upload
from tests.documents.intake import page_texts, wait_until_done

FORMATS = REPO_ROOT.parent / "shared" / "datasets" / "formats-v1"
# A photo of a duck: an image DocSift reads (one page), in which there is no text to find.
NO_TEXT = {"heic/duck_photo_nondocument.heic"}

pytestmark = [pytest.mark.dataset, pytest.mark.slow]


def _rows() -> list[dict[str, str]]:
    if not (FORMATS / "MANIFEST.tsv").exists():
        pytest.skip("../shared/datasets/formats-v1 is not beside this checkout")
    with (FORMATS / "MANIFEST.tsv").open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _files() -> list[tuple[dict[str, str], bytes]]:
    return [(row, (FORMATS / row["file"]).read_bytes()) for row in _rows()]


def _attachments(row: dict[str, str]) -> list[str]:
    if row["attachments"] in ("-", "none"):
        return []
    return sorted(part.rsplit(":", 1)[0] for part in row["attachments"].split("; "))


async def test_every_file_is_processed_with_pages_text_and_children(client, tenant):
    failures = []
    for row, data in _files():
        response = await upload(client, tenant, data, Path(row["file"]).name)
        assert response.status_code == 201, (row["file"], response.text)
        body = response.json()
        assert "documents" not in body, f"{row['file']} was unpacked as an archive"
        document = await wait_until_done(client, tenant, body["document_id"])
        texts = await page_texts(client, tenant, document) if document["num_pages"] else []
        chars = sum(len(t.strip()) for t in texts)
        if document["status"] != "processed" or document["num_pages"] < 1:
            failures.append((row["file"], document["status"], document["error"]))
        elif row["file"] not in NO_TEXT and chars < 50:
            failures.append((row["file"], "too little text", chars))
        children = [
            await wait_until_done(client, tenant, c["document_id"]) for c in document["children"]
        ]
        if sorted(c["filename"] for c in children) != _attachments(row):
            failures.append((row["file"], "children", [c["filename"] for c in children]))
        for child in children:
            if child["status"] != "processed" or child["num_pages"] < 1:
                failures.append((row["file"], child["filename"], child["status"], child["error"]))
            assert child["parent_id"] == document["document_id"]
    assert failures == []
