"""POST/GET /v1/evaluations: a background run whose metrics agree with its items, billed per page."""

from backend.backends.base import ClassifyRequest
from backend.errors import ModelError
from tests.evaluation.helpers import SCHEMA, keyword_answer
from tests.fixtures.db import make_document


async def start(client, tenant, **body):
    return await client.post("/v1/evaluations", json=body, headers=tenant.headers)


async def test_run_reports_metrics_that_agree_with_its_items(
    client, tenant, labelled_set, wait_done
):
    items = await labelled_set(tenant)
    started = await start(
        client, tenant, name="first", classification_schema=SCHEMA, query_model="fake", items=items
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"
    assert started.json()["total"] == 8 and started.json()["credits_estimate"] == 12
    body = await wait_done(tenant, started.json()["evaluation_id"])
    assert (
        body["status"] == "completed"
        and body["done"] == 8
        and body["labels"] == ["invoice", "other"]
    )
    assert [i["document_id"] for i in body["items"]] == [i["document_id"] for i in items]
    pairs = [(i["expected_label"], i["predicted_label"]) for i in body["items"]]
    metrics = body["metrics"]
    assert metrics["accuracy"] == sum(e == p for e, p in pairs) / len(pairs) == 7 / 8
    assert metrics["confusion_matrix"] == {
        "labels": ["invoice", "other"],
        "matrix": [[4, 0], [1, 3]],
    }
    assert metrics["per_label"]["invoice"] == {
        "precision": 0.8,
        "recall": 1.0,
        "f1": 0.8889,
        "support": 4,
    }
    assert metrics["per_label"]["other"]["recall"] == 0.75
    assert metrics["credits"] == 12 == sum(i["credits_used"] for i in body["items"])
    assert metrics["latency_p50"] is not None and metrics["failed"] == 0
    # every confident answer is in the top bin; 7 of 8 right at confidence 0.99
    assert metrics["ece"] == round(abs(0.99 - 7 / 8), 4)
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 1000 - 12 and account["reserved"] == 0
    listed = (await client.get("/v1/evaluations", headers=tenant.headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["accuracy"] == 7 / 8
    # each item links to its classification in the audit history, kind "evaluation"
    audit = await client.get(
        f"/v1/classifications/{body['items'][0]['request_id']}", headers=tenant.headers
    )
    assert audit.status_code == 200 and audit.json()["kind"] == "evaluation"


async def test_refused_up_front_when_credits_cannot_cover_it(
    client, harness, labelled_set, fake_backend
):
    tenant = await harness.tenant(credits=11)
    items = await labelled_set(tenant)
    response = await start(
        client, tenant, classification_schema=SCHEMA, query_model="fake", items=items
    )
    assert response.status_code == 402 and response.json()["error"] == "insufficient_credits"
    assert (
        "12 credits" in response.json()["message"] and "11 available" in response.json()["message"]
    )
    assert (await client.get("/v1/evaluations", headers=tenant.headers)).json()["total"] == 0
    assert fake_backend.calls == []
    assert (await client.get("/v1/account", headers=tenant.headers)).json()["balance"] == 11


async def test_bad_requests_and_isolation(client, harness, tenant, wait_done):
    doc = await make_document(harness, tenant, ["x"])
    base = {"classification_schema": SCHEMA, "query_model": "fake"}
    wrong_label = await start(
        client, tenant, **base, items=[{"document_id": doc, "expected_label": "memo"}]
    )
    assert wrong_label.status_code == 400 and "memo" in wrong_label.json()["message"]
    neither = await start(client, tenant, items=[{"document_id": doc, "expected_label": "other"}])
    assert neither.status_code == 400
    empty = await start(client, tenant, **base, items=[])
    assert empty.status_code == 400
    unprocessed = await make_document(harness, tenant, ["x"], status="uploaded")
    not_ready = await start(
        client, tenant, **base, items=[{"document_id": unprocessed, "expected_label": "other"}]
    )
    assert not_ready.status_code == 400
    other = await harness.tenant(name="other")
    theirs = await start(
        client, other, **base, items=[{"document_id": doc, "expected_label": "other"}]
    )
    assert theirs.status_code == 404 and theirs.json()["error"] == "not_found"
    mine = await start(
        client, tenant, **base, items=[{"document_id": doc, "expected_label": "other"}]
    )
    evaluation_id = mine.json()["evaluation_id"]
    await wait_done(tenant, evaluation_id)
    assert (
        await client.get(f"/v1/evaluations/{evaluation_id}", headers=other.headers)
    ).status_code == 404
    assert (await client.get("/v1/evaluations", headers=other.headers)).json()["total"] == 0


async def test_a_failing_item_is_recorded_and_the_run_goes_on(
    client, harness, tenant, fake_backend, wait_done
):
    def answer(request: ClassifyRequest) -> dict[str, float]:
        if "boom" in request.pages[0]:
            raise ModelError("provider down")
        return keyword_answer(request)

    fake_backend.answer = answer
    good = await make_document(harness, tenant, ["invoice 1"])
    bad = await make_document(harness, tenant, ["boom", "second page"])
    started = await start(
        client,
        tenant,
        classification_schema=SCHEMA,
        query_model="fake",
        items=[
            {"document_id": bad, "expected_label": "invoice"},
            {"document_id": good, "expected_label": "invoice"},
        ],
    )
    assert started.json()["credits_estimate"] == 3
    body = await wait_done(tenant, started.json()["evaluation_id"])
    assert body["status"] == "completed" and body["done"] == 2
    failed, ok = body["items"]
    assert failed["status"] == "failed" and failed["error"].startswith("model_error")
    assert failed["predicted_label"] is None and failed["credits_used"] == 0
    assert ok["status"] == "completed" and ok["predicted_label"] == "invoice"
    assert body["metrics"]["n"] == 1 and body["metrics"]["failed"] == 1
    assert body["metrics"]["accuracy"] == 1.0 and body["metrics"]["credits"] == 1
    # a failed classification costs nothing
    assert (await client.get("/v1/account", headers=tenant.headers)).json()["balance"] == 999


async def test_a_classifier_is_evaluated_as_it_runs(
    client, harness, tenant, fake_backend, wait_done
):
    """The version's page range and instructions apply; an item is never its own example."""
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={
                "name": "first page",
                "classification_schema": SCHEMA,
                "query_model": "fake",
                "page_range": "1",
                "instructions": "Look at the letterhead.",
            },
            headers=tenant.headers,
        )
    ).json()
    cid = classifier["classifier_id"]
    labelled = await make_document(harness, tenant, ["invoice A", "terms", "more terms"])
    fresh = await make_document(harness, tenant, ["letter B", "invoice mentioned on page 2"])
    for document_id, label in ((labelled, "invoice"), (fresh, "other")):
        response = await client.post(
            f"/v1/classifiers/{cid}/examples",
            json={"document_id": document_id, "label": label},
            headers=tenant.headers,
        )
        assert response.status_code == 201
    started = await start(
        client,
        tenant,
        classifier_id=cid,
        items=[
            {"document_id": labelled, "expected_label": "invoice"},
            {"document_id": fresh, "expected_label": "other"},
        ],
    )
    assert started.status_code == 202, started.text
    assert started.json()["credits_estimate"] == 2  # one page each, not five
    body = await wait_done(tenant, started.json()["evaluation_id"])
    assert body["classifier_id"] == cid and body["classifier_version"] == 1
    assert body["metrics"]["credits"] == 2 and body["metrics"]["accuracy"] == 1.0
    assert body["metrics"]["items_in_examples"] == 2
    calls = {call.pages[0]: call for call in fake_backend.calls}
    assert calls["invoice A"].page_numbers == [1] and calls["letter B"].page_numbers == [1]
    assert calls["invoice A"].instructions == "Look at the letterhead."
    # few-shot context (the fake is not trainable): the other document's example, never its own
    assert [e.label for e in calls["invoice A"].examples] == ["other"]
    assert [e.label for e in calls["letter B"].examples] == ["invoice"]
