"""The API additions the console needs: filename search, limits, duplicate examples refused,
cutting a document into page ranges, an evaluation's cost before it starts, filenames in
lists, and validation errors that name their field."""

import json

from tests.documents.conftest import INVOICE, assert_error, upload
from tests.fixtures.documents import text_pdf

SCHEMA = [
    {"label": "invoice", "description": "A request for payment"},
    {"label": "other", "description": "Anything else"},
]


async def _pdf(client, tenant, name: str, pages: int = 2, text: str = INVOICE) -> dict:
    body = text_pdf([f"{text}\nPage {n + 1} of {name}" for n in range(pages)])
    response = await upload(client, tenant, body, name)
    assert response.status_code == 201, response.text
    return response.json()


async def test_documents_list_searches_filenames_and_filters_status(client, tenant):
    await _pdf(client, tenant, "W9_acme.pdf")
    await _pdf(client, tenant, "invoice_100%.pdf")
    await _pdf(client, tenant, "w9-beta.pdf")
    found = await client.get("/v1/documents", params={"q": "w9"}, headers=tenant.headers)
    assert sorted(d["filename"] for d in found.json()["items"]) == ["W9_acme.pdf", "w9-beta.pdf"]
    assert found.json()["total"] == 2
    # LIKE wildcards are literal: "_" matches only an underscore, "%" only a percent sign.
    underscore = await client.get("/v1/documents", params={"q": "9_"}, headers=tenant.headers)
    assert [d["filename"] for d in underscore.json()["items"]] == ["W9_acme.pdf"]
    percent = await client.get("/v1/documents", params={"q": "0%"}, headers=tenant.headers)
    assert [d["filename"] for d in percent.json()["items"]] == ["invoice_100%.pdf"]
    failed = await client.get("/v1/documents", params={"status": "failed"}, headers=tenant.headers)
    assert failed.json()["items"] == []
    bad = await client.get("/v1/documents", params={"status": "gone"}, headers=tenant.headers)
    assert_error(bad, 400, "invalid_request")
    assert "status" in bad.json()["message"]


async def test_limits_report_the_upload_limit(client, tenant, harness):
    reply = await client.get("/v1/limits", headers=tenant.headers)
    assert reply.status_code == 200
    assert reply.json()["max_upload_bytes"] == harness.settings.max_upload_bytes
    assert reply.json()["max_pages"] == harness.settings.max_pages
    assert_error(await client.get("/v1/limits"), 403, "invalid_api_key")


async def _classifier(client, tenant) -> str:
    reply = await client.post(
        "/v1/classifiers",
        headers=tenant.headers,
        json={"name": "mail", "classification_schema": SCHEMA},
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["classifier_id"]


async def test_the_same_file_twice_is_refused_as_an_example(client, tenant):
    cid = await _classifier(client, tenant)
    first = await _pdf(client, tenant, "a.pdf")
    again = await _pdf(client, tenant, "a copy.pdf")  # its own text: not a duplicate
    pdf = text_pdf([INVOICE])
    same_bytes = await upload(client, tenant, pdf, "one.pdf")
    same_bytes_again = await upload(client, tenant, pdf, "one (1).pdf")
    url = f"/v1/classifiers/{cid}/examples"
    for doc in (first, again, same_bytes.json()):
        added = await client.post(
            url, headers=tenant.headers, json={"document_id": doc["document_id"], "label": "other"}
        )
        assert added.status_code == 201, added.text
    repeat = await client.post(
        url, headers=tenant.headers, json={"document_id": first["document_id"], "label": "invoice"}
    )
    assert_error(repeat, 409, "conflict")
    copy = await client.post(
        url,
        headers=tenant.headers,
        json={"document_id": same_bytes_again.json()["document_id"], "label": "other"},
    )
    assert_error(copy, 409, "conflict")
    assert "one.pdf" in copy.json()["message"] and "one (1).pdf" in copy.json()["message"]
    listing = (await client.get(url, headers=tenant.headers)).json()
    assert [e["filename"] for e in listing["items"]] == ["a.pdf", "a copy.pdf", "one.pdf"]
    assert listing["items"][0]["num_pages"] == 2
    # Deleted, the example no longer blocks the file.
    await client.delete(f"{url}/{listing['items'][2]['example_id']}", headers=tenant.headers)
    readded = await client.post(
        url,
        headers=tenant.headers,
        json={"document_id": same_bytes_again.json()["document_id"], "label": "other"},
    )
    assert readded.status_code == 201


async def test_segments_become_documents_with_their_pages(client, tenant):
    parent = await _pdf(client, tenant, "bundle.pdf", pages=5)
    url = f"/v1/documents/{parent['document_id']}/segments"
    made = await client.post(
        url, headers=tenant.headers, json={"segments": [{"pages": "1-2"}, {"pages": "3,5"}]}
    )
    assert made.status_code == 201, made.text
    docs = made.json()["documents"]
    assert [d["num_pages"] for d in docs] == [2, 2]
    assert all(d["parent_id"] == parent["document_id"] for d in docs)
    page = await client.get(
        f"/v1/documents/{docs[1]['document_id']}/pages/2", headers=tenant.headers
    )
    assert "Page 5 of bundle.pdf" in page.json()["text"]
    image = await client.get(
        f"/v1/documents/{docs[0]['document_id']}/pages/1/image", headers=tenant.headers
    )
    assert image.status_code == 200
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 1000  # nothing was classified, nothing charged
    bad = await client.post(url, headers=tenant.headers, json={"segments": [{"pages": "7-9"}]})
    assert_error(bad, 400, "invalid_request")
    assert bad.json()["message"].startswith("segments[0].pages")


async def test_evaluation_estimate_before_starting(client, tenant):
    docs = [await _pdf(client, tenant, f"d{n}.pdf", pages=n + 1) for n in range(3)]
    body = {
        "classification_schema": SCHEMA,
        "items": [{"document_id": d["document_id"], "expected_label": "invoice"} for d in docs],
    }
    estimate = await client.post("/v1/evaluations/estimate", headers=tenant.headers, json=body)
    assert estimate.status_code == 200, estimate.text
    assert estimate.json() == {
        "credits_estimate": 6,  # 1 + 2 + 3 pages at the fake model's 1 credit a page
        "pages": 6,
        "model": "fake",
        "input_mode": "text",
        "available": 1000,
        "enough": True,
    }
    runs = await client.get("/v1/evaluations", headers=tenant.headers)
    assert runs.json()["total"] == 0  # an estimate starts nothing
    started = await client.post("/v1/evaluations", headers=tenant.headers, json=body)
    assert started.json()["credits_estimate"] == 6
    run = await client.get(
        f"/v1/evaluations/{started.json()['evaluation_id']}", headers=tenant.headers
    )
    assert [i["filename"] for i in run.json()["items"]] == ["d0.pdf", "d1.pdf", "d2.pdf"]


async def test_validation_errors_name_the_field(client, tenant):
    missing = await client.post("/v1/classify", headers=tenant.headers, json={})
    assert_error(missing, 400, "invalid_request")
    assert "document_id is required" in missing.json()["message"]
    assert "Field required" not in missing.json()["message"]
    broken = await client.post(
        "/v1/classify",
        headers={**tenant.headers, "content-type": "application/json"},
        content=b'{"document_id": ',
    )
    assert broken.json()["message"] == "The request body is not valid JSON."
    nested = await client.post(
        "/v1/evaluations",
        headers=tenant.headers,
        json={"classification_schema": SCHEMA, "items": [{"document_id": "x"}]},
    )
    assert (
        "items[0]: give exactly one of expected_label and expected_labels"
        in (nested.json()["message"])
    )
    pattern = await client.get(
        "/v1/classifications", headers=tenant.headers, params={"since": "yesterday"}
    )
    assert_error(pattern, 400, "invalid_request")
    assert "since has an invalid format" in pattern.json()["message"]
    assert "^" not in pattern.json()["message"]  # no regex
    options = await client.post(
        "/v1/batch-uploads",
        headers=tenant.headers,
        files={"file": ("a.txt", b"hello there")},
        data={
            "batch": json.dumps({"classification_schema": [{"description": "x"}, {"label": "y"}]})
        },
    )
    assert_error(options, 400, "invalid_request")
    assert "batch.classification_schema[0].label is required" in options.json()["message"]
    not_json = await client.post(
        "/v1/batch-uploads",
        headers=tenant.headers,
        files={"file": ("a.txt", b"hello there")},
        data={"batch": "{"},
    )
    assert "batch is not valid JSON" in not_json.json()["message"]
