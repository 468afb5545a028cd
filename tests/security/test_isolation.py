"""Tenant isolation: every route, called with one account's ids and another account's key, is a 404,
and no list shows another account's objects."""

import asyncio
import re

from tests.fixtures.documents import text_pdf

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


async def _owner_objects(client, headers) -> dict[str, str]:
    doc = (
        await client.post(
            "/v1/documents",
            files={"file": ("a.pdf", text_pdf(["Invoice 7 total due"]))},
            headers=headers,
        )
    ).json()
    document_id = doc["document_id"]
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={"name": "c", "classification_schema": SCHEMA, "query_model": "fake"},
            headers=headers,
        )
    ).json()
    classifier_id = classifier["classifier_id"]
    example = (
        await client.post(
            f"/v1/classifiers/{classifier_id}/examples",
            json={"document_id": document_id, "label": "invoice"},
            headers=headers,
        )
    ).json()
    run = (
        await client.post(
            f"/v1/classifiers/{classifier_id}/run",
            json={"document_id": document_id},
            headers=headers,
        )
    ).json()
    evaluation = (
        await client.post(
            "/v1/evaluations",
            json={
                "classifier_id": classifier_id,
                "items": [{"document_id": document_id, "expected_label": "invoice"}],
            },
            headers=headers,
        )
    ).json()
    key = (await client.post("/v1/account/keys", json={"name": "second"}, headers=headers)).json()
    batch = (
        await client.post(
            "/v1/batches",
            json={
                "classifier_id": classifier_id,
                "document_ids": [document_id],
                # Nobody listens there: the delivery is logged as failed.
                "webhook_url": "http://127.0.0.1:9/hook",
            },
            headers=headers,
        )
    ).json()
    for _ in range(200):  # let the evaluation and the batch finish, and the webhook be tried
        deliveries = (await client.get("/v1/webhooks/deliveries", headers=headers)).json()
        if deliveries["items"]:
            break
        await asyncio.sleep(0.05)
    return {
        "document_id": document_id,
        "classifier_id": classifier_id,
        "example_id": example["example_id"],
        "request_id": run["request_id"],
        "evaluation_id": evaluation["evaluation_id"],
        "key_id": key["key_id"],
        "batch_id": batch["batch_id"],
        "delivery_id": deliveries["items"][0]["delivery_id"],
        "n": "1",
        "account_id": "x",
    }


async def test_every_route_with_another_accounts_ids_is_404(client, harness, tenant):
    ids = await _owner_objects(client, tenant.headers)
    intruder = await harness.tenant(name="intruder")
    paths = harness.app.openapi()["paths"]
    walked = 0
    for template, operations in paths.items():
        params = re.findall(r"{(\w+)}", template)
        if not params or template.startswith("/v1/admin"):
            continue
        path = template
        for name in params:
            path = path.replace("{" + name + "}", ids[name])
        for method in operations:
            body = (
                {
                    "document_id": ids["document_id"],
                    "label": "invoice",
                    "name": "x",
                    "segments": [{"pages": "1"}],
                }
                if method in ("post", "patch")
                else None
            )
            response = await client.request(
                method.upper(), path, json=body, headers=intruder.headers
            )
            assert response.status_code == 404, (method, path, response.status_code, response.text)
            assert response.json()["error"] == "not_found"
            walked += 1
    assert walked >= 15
    # Using the owner's document through the intruder's own classify/split/evaluation is a 404 too.
    for path, body in [
        (
            "/v1/classify",
            {
                "document_id": ids["document_id"],
                "classification_schema": SCHEMA,
                "query_model": "fake",
            },
        ),
        (
            "/v1/split",
            {
                "document_id": ids["document_id"],
                "classification_schema": SCHEMA,
                "query_model": "fake",
            },
        ),
        (
            "/v1/evaluations",
            {
                "classification_schema": SCHEMA,
                "query_model": "fake",
                "items": [{"document_id": ids["document_id"], "expected_label": "invoice"}],
            },
        ),
    ]:
        response = await client.post(path, json=body, headers=intruder.headers)
        assert response.status_code == 404, (path, response.text)
    # Lists never leak.
    for path in (
        "/v1/documents",
        "/v1/classifiers",
        "/v1/classifications",
        "/v1/evaluations",
        "/v1/account/ledger",
        "/v1/batches",
        "/v1/webhooks/deliveries",
    ):
        listed = (await client.get(path, headers=intruder.headers)).json()
        text = str(listed)
        assert not any(
            value in text for key, value in ids.items() if key not in ("n", "account_id")
        ), path
    keys = (await client.get("/v1/account/keys", headers=intruder.headers)).json()["items"]
    assert len(keys) == 1
    # The owner still sees everything.
    assert (
        await client.get(f"/v1/documents/{ids['document_id']}", headers=tenant.headers)
    ).status_code == 200
