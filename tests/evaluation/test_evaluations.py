"""Evaluations: background runs with progress, metrics that agree with the items, credits, calibration."""

import asyncio

import pytest

from backend.backends.base import ClassifyRequest
from backend.evaluation.metrics import apply_temperature, fit_temperature, summarize
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "other", "description": "Anything else"},
]


def keyword_answer(request: ClassifyRequest) -> dict[str, float]:
    """Right for documents that say 'invoice', wrong (and overconfident) for 'receipt'."""
    text = " ".join(request.pages).lower()
    if "invoice" in text or "receipt" in text:
        return {"invoice": 0.99, "other": 0.01}
    return {"invoice": 0.01, "other": 0.99}


@pytest.fixture
def fake_backend():
    from backend.backends.fake import FunctionBackend

    return FunctionBackend(keyword_answer)


async def wait_done(client, tenant, evaluation_id, seconds=20.0):
    for _ in range(int(seconds / 0.05)):
        body = (await client.get(f"/v1/evaluations/{evaluation_id}", headers=tenant.headers)).json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("evaluation did not finish")


async def _dataset(harness, tenant):
    items = []
    for i in range(4):
        items.append(
            {
                "document_id": await make_document(harness, tenant, [f"invoice {i}", "page 2"]),
                "expected_label": "invoice",
            }
        )
    items.append(
        {
            "document_id": await make_document(harness, tenant, ["a receipt"]),
            "expected_label": "other",
        }
    )
    for i in range(3):
        items.append(
            {
                "document_id": await make_document(harness, tenant, [f"letter {i}"]),
                "expected_label": "other",
            }
        )
    return items


async def test_run_reports_progress_metrics_and_items(client, harness, tenant):
    items = await _dataset(harness, tenant)
    started = await client.post(
        "/v1/evaluations",
        json={
            "name": "first",
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "items": items,
        },
        headers=tenant.headers,
    )
    assert started.status_code == 202, started.text
    assert started.json()["total"] == 8 and started.json()["credits_estimate"] == 12
    body = await wait_done(client, tenant, started.json()["evaluation_id"])
    assert body["status"] == "completed" and body["done"] == 8
    predicted = [(i["expected_label"], i["predicted_label"]) for i in body["items"]]
    accuracy = sum(e == p for e, p in predicted) / len(predicted)
    metrics = body["metrics"]
    assert metrics["accuracy"] == accuracy == 7 / 8
    assert metrics["confusion_matrix"] == {
        "labels": ["invoice", "other"],
        "matrix": [[4, 0], [1, 3]],
    }
    assert (
        metrics["per_label"]["invoice"]["precision"] == 0.8
        and metrics["per_label"]["other"]["recall"] == 0.75
    )
    assert metrics["credits"] == 12 and metrics["latency_p50"] is not None
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 1000 - 12
    listed = (await client.get("/v1/evaluations", headers=tenant.headers)).json()
    assert listed["items"][0]["accuracy"] == accuracy


async def test_refused_up_front_when_credits_cannot_cover_it(client, harness):
    tenant = await harness.tenant(credits=5)
    items = await _dataset(harness, tenant)
    response = await client.post(
        "/v1/evaluations",
        json={"classification_schema": SCHEMA, "query_model": "fake", "items": items},
        headers=tenant.headers,
    )
    assert response.status_code == 402 and "12 credits" in response.json()["message"]


async def test_bad_requests_and_isolation(client, harness, tenant):
    doc = await make_document(harness, tenant, ["x"])
    base = {"classification_schema": SCHEMA, "query_model": "fake"}
    wrong_label = await client.post(
        "/v1/evaluations",
        json={**base, "items": [{"document_id": doc, "expected_label": "memo"}]},
        headers=tenant.headers,
    )
    assert wrong_label.status_code == 400
    neither = await client.post(
        "/v1/evaluations",
        json={"items": [{"document_id": doc, "expected_label": "other"}]},
        headers=tenant.headers,
    )
    assert neither.status_code == 400
    other = await harness.tenant(name="other")
    theirs = await client.post(
        "/v1/evaluations",
        json={**base, "items": [{"document_id": doc, "expected_label": "other"}]},
        headers=other.headers,
    )
    assert theirs.status_code == 404
    mine = await client.post(
        "/v1/evaluations",
        json={**base, "items": [{"document_id": doc, "expected_label": "other"}]},
        headers=tenant.headers,
    )
    evaluation_id = mine.json()["evaluation_id"]
    await wait_done(client, tenant, evaluation_id)
    assert (
        await client.get(f"/v1/evaluations/{evaluation_id}", headers=other.headers)
    ).status_code == 404
    assert (await client.get("/v1/evaluations", headers=other.headers)).json()["total"] == 0


async def test_calibration_lowers_the_error_of_an_overconfident_model(client, harness, tenant):
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={"name": "c", "classification_schema": SCHEMA, "query_model": "fake"},
            headers=tenant.headers,
        )
    ).json()
    items = await _dataset(harness, tenant)
    started = (
        await client.post(
            "/v1/evaluations",
            json={"classifier_id": classifier["classifier_id"], "items": items},
            headers=tenant.headers,
        )
    ).json()
    await wait_done(client, tenant, started["evaluation_id"])
    fitted = await client.post(
        f"/v1/evaluations/{started['evaluation_id']}/calibration", json={}, headers=tenant.headers
    )
    assert fitted.status_code == 200, fitted.text
    body = fitted.json()
    assert body["temperature"] > 1 and body["ece_after"] < body["ece_before"]
    doc = await make_document(harness, tenant, ["invoice 99"])
    run = (
        await client.post(
            f"/v1/classifiers/{classifier['classifier_id']}/run",
            json={"document_id": doc},
            headers=tenant.headers,
        )
    ).json()
    assert run["classification"] == "invoice" and run["confidence_scores"]["invoice"] < 0.99


def test_metrics_on_a_hand_computed_case():
    summary = summarize(
        ["a", "b"],
        ["a", "a", "b", "b"],
        ["a", "b", "b", "b"],
        [{"a": 0.9, "b": 0.1}, {"a": 0.4, "b": 0.6}, {"a": 0.2, "b": 0.8}, {"a": 0.3, "b": 0.7}],
    )
    assert summary["accuracy"] == 0.75
    assert summary["per_label"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.6667,
        "support": 2,
    }
    assert summary["macro_f1"] == round((0.6667 + 0.8) / 2, 4)
    assert summary["brier"] == round((0.02 + 0.72 + 0.08 + 0.18) / 4, 4)
    # confidences 0.9, 0.6, 0.8, 0.7; correct T, F, T, T: one per bin
    assert summary["ece"] == round((0.1 + 0.6 + 0.2 + 0.3) / 4, 4)
    assert summary["coverage"][4] == {"threshold": 0.8, "coverage": 0.5, "accuracy": 1.0}


def test_temperature_fit_softens_overconfidence():
    expected = ["a"] * 7 + ["b"] * 3
    scores = [{"a": 0.99, "b": 0.01}] * 10
    t = fit_temperature(expected, scores)
    assert t > 1
    assert apply_temperature(scores[0], t)["a"] == pytest.approx(0.7, abs=0.02)
