"""Saved classifiers: versions, runs pinned to versions, examples in prompts and training, isolation."""

import asyncio

import pytest

from backend.backends.fake import FunctionBackend
from tests.fixtures.db import make_document

THREE = [
    {"label": "invoice", "description": "A bill"},
    {"label": "contract", "description": "An agreement"},
    {"label": "other", "description": "Anything else"},
]


async def create(client, tenant, **extra):
    body = {"name": "routing", "classification_schema": THREE, "query_model": "fake", **extra}
    response = await client.post("/v1/classifiers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_versions_runs_and_pinning(client, harness, tenant):
    classifier = await create(client, tenant, instructions="Prefer invoice when unsure.")
    assert classifier["version"] == 1
    cid = classifier["classifier_id"]
    doc = await make_document(harness, tenant, ["Invoice 12", "page two"])
    first = await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
    )
    assert first.status_code == 200, first.text
    assert first.json()["classifier_id"] == cid and first.json()["classifier_version"] == 1
    assert len(first.json()["confidence_scores"]) == 3

    patched = await client.patch(
        f"/v1/classifiers/{cid}",
        json={
            "classification_schema": [*THREE, {"label": "purchase_order", "description": "A PO"}]
        },
        headers=tenant.headers,
    )
    assert patched.status_code == 200 and patched.json()["version"] == 2
    renamed = await client.patch(
        f"/v1/classifiers/{cid}", json={"name": "renamed"}, headers=tenant.headers
    )
    assert renamed.json()["version"] == 2 and renamed.json()["name"] == "renamed"

    second = (
        await client.post(
            f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
        )
    ).json()
    assert second["classifier_version"] == 2 and len(second["confidence_scores"]) == 4
    pinned = (
        await client.post(
            f"/v1/classifiers/{cid}/run",
            json={"document_id": doc, "version": 1},
            headers=tenant.headers,
        )
    ).json()
    assert pinned["classifier_version"] == 1 and set(pinned["confidence_scores"]) == {
        s["label"] for s in THREE
    }

    detail = (await client.get(f"/v1/classifiers/{cid}", headers=tenant.headers)).json()
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert len(detail["versions"][0]["classification_schema"]) == 3
    stored = await client.get(
        f"/v1/classifications/{first.json()['request_id']}", headers=tenant.headers
    )
    assert stored.status_code == 200 and stored.json()["classifier_version"] == 1
    history = (
        await client.get(f"/v1/classifications?classifier_id={cid}", headers=tenant.headers)
    ).json()
    assert history["total"] == 3


async def test_per_call_values_override_defaults(client, harness, tenant, fake_backend):
    classifier = await create(client, tenant, page_range="1")
    doc = await make_document(harness, tenant, ["one", "two", "three"])
    cid = classifier["classifier_id"]
    default = (
        await client.post(
            f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
        )
    ).json()
    assert default["pages_used"] == [1] and default["credits_used"] == 1
    override = (
        await client.post(
            f"/v1/classifiers/{cid}/run",
            json={"document_id": doc, "page_range": "2-"},
            headers=tenant.headers,
        )
    ).json()
    assert override["pages_used"] == [2, 3]
    assert fake_backend.calls[-1].pages == ["two", "three"]


async def test_examples_reach_the_model_and_must_use_schema_labels(
    client, harness, tenant, fake_backend
):
    classifier = await create(client, tenant)
    cid = classifier["classifier_id"]
    example_doc = await make_document(
        harness, tenant, ["Master services agreement between Acme and Beta"]
    )
    bad = await client.post(
        f"/v1/classifiers/{cid}/examples",
        json={"document_id": example_doc, "label": "memo"},
        headers=tenant.headers,
    )
    assert bad.status_code == 400
    added = await client.post(
        f"/v1/classifiers/{cid}/examples",
        json={"document_id": example_doc, "label": "contract"},
        headers=tenant.headers,
    )
    assert added.status_code == 201
    doc = await make_document(harness, tenant, ["Agreement between two parties"])
    await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
    )
    sent = fake_backend.calls[-1].examples
    assert [(e.label, e.text) for e in sent] == [
        ("contract", "Master services agreement between Acme and Beta")
    ]
    listed = (await client.get(f"/v1/classifiers/{cid}/examples", headers=tenant.headers)).json()
    assert listed["total"] == 1 and listed["estimate"]["n_examples"] == 1
    removed = await client.delete(
        f"/v1/classifiers/{cid}/examples/{added.json()['example_id']}", headers=tenant.headers
    )
    assert removed.status_code == 200
    await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
    )
    assert fake_backend.calls[-1].examples == []


async def test_another_account_gets_404_on_every_classifier_route(client, harness, tenant):
    classifier = await create(client, tenant)
    cid = classifier["classifier_id"]
    doc = await make_document(harness, tenant, ["x"])
    other = await harness.tenant(name="other")
    other_doc = await make_document(harness, other, ["x"])
    for method, path, body in [
        ("GET", f"/v1/classifiers/{cid}", None),
        ("PATCH", f"/v1/classifiers/{cid}", {"name": "stolen"}),
        ("DELETE", f"/v1/classifiers/{cid}", None),
        ("POST", f"/v1/classifiers/{cid}/run", {"document_id": other_doc}),
        ("POST", f"/v1/classifiers/{cid}/examples", {"document_id": other_doc, "label": "invoice"}),
        ("GET", f"/v1/classifiers/{cid}/examples", None),
    ]:
        response = await client.request(method, path, json=body, headers=other.headers)
        assert response.status_code == 404, (method, path, response.text)
    assert (await client.get("/v1/classifiers", headers=other.headers)).json()["total"] == 0
    # and the owner cannot use another account's document through its classifier
    run = await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": other_doc}, headers=tenant.headers
    )
    assert run.status_code == 404
    assert (
        await client.post(
            f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
        )
    ).status_code == 200


async def test_delete_is_soft_and_validation(client, harness, tenant):
    classifier = await create(client, tenant)
    cid = classifier["classifier_id"]
    doc = await make_document(harness, tenant, ["x"])
    run = (
        await client.post(
            f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
        )
    ).json()
    assert (
        await client.delete(f"/v1/classifiers/{cid}", headers=tenant.headers)
    ).status_code == 200
    assert (await client.get(f"/v1/classifiers/{cid}", headers=tenant.headers)).status_code == 404
    kept = (
        await client.get(f"/v1/classifications/{run['request_id']}", headers=tenant.headers)
    ).json()
    assert kept["classifier_id"] == cid and kept["classifier_version"] == 1
    for body in (
        {"name": "x", "classification_schema": THREE[:1]},
        {"name": "x", "classification_schema": THREE, "page_range": "0-"},
        {"name": "x", "classification_schema": THREE, "query_model": "nope"},
        {"name": "", "classification_schema": THREE},
    ):
        assert (
            await client.post("/v1/classifiers", json=body, headers=tenant.headers)
        ).status_code == 400


async def test_local_model_trains_on_examples(harness_local):
    harness, tenant = harness_local
    client = harness.client
    labels = [
        {"label": "alpha", "description": "first"},
        {"label": "beta", "description": "second"},
    ]
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={"name": "t", "classification_schema": labels, "query_model": "local"},
            headers=tenant.headers,
        )
    ).json()
    cid = classifier["classifier_id"]
    for i in range(4):
        for label, words in (
            ("alpha", "harbour crane container vessel"),
            ("beta", "violin orchestra symphony concerto"),
        ):
            doc = await make_document(harness, tenant, [f"{words} {i}"])
            await client.post(
                f"/v1/classifiers/{cid}/examples",
                json={"document_id": doc, "label": label},
                headers=tenant.headers,
            )
    doc = await make_document(harness, tenant, ["the orchestra played a symphony"])
    result = (
        await client.post(
            f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
        )
    ).json()
    assert result["classification"] == "beta" and result["confidence_method"] == "local_trained"
    # Reading the classifier never trains: it shows the training state; the queue trains.
    for _ in range(300):
        detail = (await client.get(f"/v1/classifiers/{cid}", headers=tenant.headers)).json()
        if detail["training"]["state"] == "ready":
            break
        assert detail["training"]["state"] in ("queued", "training")
        await asyncio.sleep(0.1)
    estimate = detail["estimate"]
    assert estimate["accuracy"] == 1.0 and estimate["n_examples"] == 8
    # 8 examples prove little: the interval and the flag say so (issue 28).
    assert estimate["too_few_examples"] is True and estimate["accuracy_interval"][0] < 0.8


@pytest.fixture
async def harness_local(database_url, tmp_path):
    from backend.backends.local import LocalBackend
    from tests.conftest import make_settings, start_harness

    settings = make_settings(database_url, tmp_path, training_debounce_seconds=0.2)
    async for harness in start_harness(settings, [FunctionBackend(), LocalBackend(settings)]):
        yield harness, await harness.tenant()


@pytest.fixture
async def llm_harness(database_url, tmp_path, monkeypatch, fake_backend):
    """An app whose gpt-4o-mini is LiteLLM talking to a fake OpenAI server on 127.0.0.1."""
    from backend.backends.llm import LiteLLMBackend
    from tests.conftest import make_settings, start_harness
    from tests.fake_openai import FakeOpenAI, codes_reply

    server = FakeOpenAI(lambda _request: codes_reply([0.1, 0.8, 0.1])).start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = make_settings(database_url, tmp_path, model_backoff_seconds=0.01)
    backend = LiteLLMBackend(settings)
    try:
        async for harness in start_harness(settings, [fake_backend, backend]):
            await backend._litellm_ready()  # the import takes seconds on a busy machine
            yield harness, server
    finally:
        server.stop()


async def test_the_nearest_examples_reach_the_llm_prompt(llm_harness):
    harness, server = llm_harness
    client, tenant = harness.client, await harness.tenant()
    classifier = await create(client, tenant, query_model="gpt-4o-mini")
    cid = classifier["classifier_id"]
    examples = {
        "contract": "Master services agreement between Acme Corp and Beta LLC, governing law",
        "invoice": "Invoice 12 from Northwind Traders, total due 40 EUR, payment terms net 30",
        "other": "Minutes of the gardening club: roses, tulips and the spring fair",
    }
    farther_invoice = "Utility bill for electricity, meter reading 1234 kWh, amount payable"
    for label, text in [*examples.items(), ("invoice", farther_invoice)]:
        doc = await make_document(harness, tenant, [text])
        added = await client.post(
            f"/v1/classifiers/{cid}/examples",
            json={"document_id": doc, "label": label},
            headers=tenant.headers,
        )
        assert added.status_code == 201
    doc = await make_document(harness, tenant, ["Services agreement between Acme Corp and Gamma"])
    response = await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["classification"] == "contract"  # the fake answered code B
    prompt = server.last_prompt()
    # Up to 3 examples, one per label before a second of any: the farther invoice stays out.
    for text in examples.values():
        assert text in prompt
    assert farther_invoice not in prompt
    # The nearest example (the agreement) comes first, shown with its label's answer code.
    assert prompt.index(examples["contract"]) < prompt.index(examples["invoice"])
    assert '<example answer="B">' in prompt
