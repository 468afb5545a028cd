"""Modes (multi-label, input mode, debiasing) travel whole from every entry point to the backend:
per request, per classifier version (a change is a new version), frozen on batches and
evaluations; a mode the model cannot serve is a 400 before any work or charge."""

import asyncio

import pytest

from backend.backends.base import ClassifyRequest, ModelInfo
from backend.backends.fake import FunctionBackend
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "nda", "description": "A non-disclosure agreement"},
    {"label": "dpa", "description": "A data processing agreement"},
    {"label": "invoice", "description": "A bill"},
]


def independent(request: ClassifyRequest) -> dict[str, float]:
    """Multi-label answers are independent probabilities; single-label ones a distribution."""
    if request.multi_label:
        return {"nda": 0.9, "dpa": 0.6, "invoice": 0.1}
    return {"nda": 0.5, "dpa": 0.3, "invoice": 0.2}


class TextOnly(FunctionBackend):
    """A backend that declares no mode beyond single-label text."""

    name = "text-only"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("plain", self.name, 1, "function")]


@pytest.fixture
def fake_backend() -> FunctionBackend:
    return FunctionBackend(independent)


@pytest.fixture
def extra_backends():
    return [TextOnly(independent)]


async def test_multi_label_on_classify(client, harness, tenant, fake_backend):
    doc = await make_document(harness, tenant, ["mutual NDA with a DPA annex"])
    body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake"}
    single = (await client.post("/v1/classify", json=body, headers=tenant.headers)).json()
    assert single["classifications"] is None and single["modes"]["multi_label"] is False
    assert abs(sum(single["confidence_scores"].values()) - 1) < 0.001
    response = await client.post(
        "/v1/classify", json={**body, "multi_label": True}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert fake_backend.calls[-1].multi_label is True
    assert result["confidence_scores"] == {"nda": 0.9, "dpa": 0.6, "invoice": 0.1}
    assert result["classifications"] == ["nda", "dpa"] and result["classification"] == "nda"
    again = await client.get(f"/v1/classifications/{result['request_id']}", headers=tenant.headers)
    assert again.json()["classifications"] == ["nda", "dpa"]


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ({"multi_label": True}, "multi_label"),
        ({"input_mode": "image"}, "reads text only"),
        ({"debias": "permutations"}, "debias"),
    ],
)
async def test_a_mode_the_model_cannot_serve_is_400_and_free(client, harness, mode, fragment):
    tenant = await harness.tenant(credits=3)
    doc = await make_document(harness, tenant, ["text"])
    body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "plain", **mode}
    response = await client.post("/v1/classify", json=body, headers=tenant.headers)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert fragment in response.json()["message"]
    account = (await client.get("/v1/account", headers=tenant.headers)).json()
    assert account["balance"] == 3 and account["reserved"] == 0


async def test_bad_mode_values_are_400(client, harness, tenant):
    doc = await make_document(harness, tenant, ["text"])
    for bad in ({"input_mode": "smell"}, {"permutations": 1}, {"debias": "magic"}):
        body = {"document_id": doc, "classification_schema": SCHEMA, "query_model": "fake", **bad}
        response = await client.post("/v1/classify", json=body, headers=tenant.headers)
        assert response.status_code == 400, bad


async def test_classifier_versions_carry_modes_and_runs_override_them(
    client, harness, tenant, fake_backend
):
    created = await client.post(
        "/v1/classifiers",
        json={
            "name": "contracts",
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "multi_label": True,
            "debias": "permutations",
            "permutations": 4,
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    classifier = created.json()
    assert classifier["modes"] == {
        "multi_label": True,
        "input_mode": "text",
        "debias": "permutations",
        "permutations": 4,
    }
    doc = await make_document(harness, tenant, ["text"])
    url = f"/v1/classifiers/{classifier['classifier_id']}"
    run = (
        await client.post(f"{url}/run", json={"document_id": doc}, headers=tenant.headers)
    ).json()
    call = fake_backend.calls[-1]
    assert (call.multi_label, call.debias, call.permutations) == (True, "permutations", 4)
    assert run["classifications"] == ["nda", "dpa"]
    override = {"document_id": doc, "multi_label": False, "debias": "none"}
    await client.post(f"{url}/run", json=override, headers=tenant.headers)
    assert (fake_backend.calls[-1].multi_label, fake_backend.calls[-1].debias) == (False, "none")
    # A change of mode is a new version; a patch that repeats the current modes is not.
    same = await client.patch(url, json={"multi_label": True}, headers=tenant.headers)
    assert same.json()["version"] == 1
    changed = await client.patch(url, json={"input_mode": "auto"}, headers=tenant.headers)
    assert changed.json()["version"] == 2 and changed.json()["modes"]["input_mode"] == "auto"
    assert changed.json()["modes"]["multi_label"] is True  # the rest carried over
    pinned = {"document_id": doc, "version": 1}
    await client.post(f"{url}/run", json=pinned, headers=tenant.headers)
    assert fake_backend.calls[-1].input_mode == "text"
    detail = (await client.get(url, headers=tenant.headers)).json()
    assert [v["modes"]["input_mode"] for v in detail["versions"]] == ["text", "auto"]


async def test_batches_and_evaluations_freeze_their_modes(client, harness, tenant, fake_backend):
    doc = await make_document(harness, tenant, ["text"], with_file=True)  # text+image renders it
    batch = await client.post(
        "/v1/batches",
        json={
            "document_ids": [doc],
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "multi_label": True,
            "input_mode": "text+image",
        },
        headers=tenant.headers,
    )
    assert batch.status_code == 202, batch.text
    for _ in range(200):
        out = await client.get(f"/v1/batches/{batch.json()['batch_id']}", headers=tenant.headers)
        if out.json()["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    item = out.json()["items"][0]
    assert item["status"] == "completed" and item["result"]["classifications"] == ["nda", "dpa"]
    assert fake_backend.calls[-1].input_mode == "text+image"
    assert list(fake_backend.calls[-1].images) == [1]  # the page went as an image too

    started = await client.post(
        "/v1/evaluations",
        json={
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "debias": "contextual",
            "items": [{"document_id": doc, "expected_label": "nda"}],
        },
        headers=tenant.headers,
    )
    assert started.status_code == 202, started.text
    for _ in range(200):
        run = await client.get(
            f"/v1/evaluations/{started.json()['evaluation_id']}", headers=tenant.headers
        )
        if run.json()["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert run.json()["status"] == "completed"
    assert fake_backend.calls[-1].debias == "contextual"


async def test_split_passes_modes_to_every_page(client, harness, tenant, fake_backend):
    doc = await make_document(harness, tenant, ["one", "two"])
    response = await client.post(
        "/v1/split",
        json={
            "document_id": doc,
            "classification_schema": SCHEMA,
            "query_model": "fake",
            "debias": "permutations",
            "permutations": 2,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert [(c.debias, c.permutations) for c in fake_backend.calls[-2:]] == [
        ("permutations", 2),
        ("permutations", 2),
    ]
