"""The review queue: policy, pending vs auto-accepted, decisions, idempotency, events, isolation."""

import pytest
from sqlmodel import select

from backend.backends.fake import FunctionBackend
from backend.models import Example, WebhookDelivery
from tests.fixtures.db import make_document

THREE = [
    {"label": "invoice", "description": "A bill"},
    {"label": "contract", "description": "An agreement"},
    {"label": "other", "description": "Anything else"},
]


def by_text(request):
    """Confidence from the document: "sure" 0.95 on invoice, else 0.6 on invoice."""
    top = 0.95 if "sure" in request.pages[0] else 0.6
    rest = (1 - top) / 2
    return {"invoice": top, "contract": rest, "other": rest}


@pytest.fixture
def fake_backend():
    return FunctionBackend(by_text)


async def make_classifier(client, tenant, **extra):
    body = {"name": "r", "classification_schema": THREE, "query_model": "fake", **extra}
    response = await client.post("/v1/classifiers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()["classifier_id"]


async def run(client, tenant, cid, doc):
    response = await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_queue_and_decisions(client, harness, tenant):
    await client.put("/v1/webhooks", json={"url": "http://hooks.test/x"}, headers=tenant.headers)
    cid = await make_classifier(client, tenant, review_policy={"threshold": 0.8})
    sure = await make_document(harness, tenant, ["sure invoice"])
    unsure = [await make_document(harness, tenant, [f"maybe {i}"]) for i in range(3)]
    assert (await run(client, tenant, cid, sure))["review_status"] == "auto_accepted"
    results = [await run(client, tenant, cid, d) for d in unsure]
    assert {r["review_status"] for r in results} == {"pending"}

    queue = (await client.get("/v1/reviews", headers=tenant.headers)).json()
    assert queue["pending"] == 3 and queue["total"] == 3
    assert [i["request_id"] for i in queue["items"]] == [r["request_id"] for r in results]
    assert queue["items"][0]["threshold"] == 0.8 and queue["items"][0]["confidence"] == 0.6
    everything = (await client.get("/v1/reviews?status=all", headers=tenant.headers)).json()
    assert everything["total"] == 4
    assert (await client.get("/v1/reviews?label=contract", headers=tenant.headers)).json()[
        "total"
    ] == 0
    assert (
        await client.get(f"/v1/reviews?classifier_id={cid}&limit=1", headers=tenant.headers)
    ).json()["items"][0]["request_id"] == results[0]["request_id"]

    first = results[0]["request_id"]
    url = f"/v1/reviews/{first}"
    decided = await client.post(url, json={"label": "contract"}, headers=tenant.headers)
    assert decided.status_code == 200, decided.text
    item = decided.json()
    assert item["review_status"] == "reviewed" and item["classification"] == "invoice"
    assert item["decision"]["outcome"] == "corrected" and item["decision"]["reviewed_by"]
    assert item["label"] == "contract" and item["decision"]["example_id"]
    # Idempotent: the same decision again changes nothing; another one is a conflict.
    again = (await client.post(url, json={"label": "contract"}, headers=tenant.headers)).json()
    assert again["decision"] == item["decision"]
    conflict = await client.post(url, json={"label": "other"}, headers=tenant.headers)
    assert conflict.status_code == 409
    bad = await client.post(
        f"/v1/reviews/{results[1]['request_id']}", json={"label": "nope"}, headers=tenant.headers
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    confirmed = await client.post(
        f"/v1/reviews/{results[1]['request_id']}", json={"label": "invoice"}, headers=tenant.headers
    )
    assert confirmed.json()["decision"]["outcome"] == "confirmed"

    queue = (await client.get("/v1/reviews", headers=tenant.headers)).json()
    assert queue["pending"] == 1
    async with harness.app.state.docsift.sessionmaker() as session:
        examples = (await session.exec(select(Example).where(Example.classifier_id == cid))).all()
        events = (await session.exec(select(WebhookDelivery.event_type))).all()
    assert sorted((e.label, e.source) for e in examples) == [
        ("contract", "review"),
        ("invoice", "review"),
    ]
    assert sorted(events).count("classification.review_required") == 3
    assert sorted(events).count("classification.reviewed") == 2
    detail = (await client.get(f"/v1/classifiers/{cid}", headers=tenant.headers)).json()
    assert detail["num_examples"] == 2 and detail["review"]["threshold"] == 0.8


async def test_default_threshold_inline_and_isolation(client, harness, tenant):
    doc = await make_document(harness, tenant, ["maybe"])
    response = await client.post(
        "/v1/classify",
        json={"document_id": doc, "classification_schema": THREE},
        headers=tenant.headers,
    )
    result = response.json()
    assert result["review_status"] == "pending"  # 0.6 under the default 0.7
    other = await harness.tenant(name="other")
    assert (await client.get("/v1/reviews", headers=other.headers)).json()["total"] == 0
    stranger = await client.post(
        f"/v1/reviews/{result['request_id']}", json={"label": "invoice"}, headers=other.headers
    )
    assert stranger.status_code == 404
    # An inline result has no classifier to teach: decided, no example.
    mine = await client.post(
        f"/v1/reviews/{result['request_id']}", json={"label": "other"}, headers=tenant.headers
    )
    assert mine.json()["decision"]["example_id"] is None


async def test_target_accuracy_policy_needs_an_evaluation(client, harness, tenant):
    cid = await make_classifier(client, tenant, review_policy={"target_accuracy": 0.9})
    detail = (await client.get(f"/v1/classifiers/{cid}", headers=tenant.headers)).json()
    # Nothing measured yet: everything goes to review.
    assert detail["review"]["source"] == "target_accuracy" and detail["review"]["threshold"] > 1
    sure = await make_document(harness, tenant, ["sure invoice"])
    assert (await run(client, tenant, cid, sure))["review_status"] == "pending"
    bad = await client.post(
        "/v1/classifiers",
        json={
            "name": "x",
            "classification_schema": THREE,
            "review_policy": {"threshold": 0.5, "target_accuracy": 0.9},
        },
        headers=tenant.headers,
    )
    assert bad.status_code == 400
    patched = await client.patch(
        f"/v1/classifiers/{cid}", json={"review_policy": {"threshold": 0.5}}, headers=tenant.headers
    )
    assert patched.json()["version"] == 2 and patched.json()["review_policy"]["threshold"] == 0.5
