"""A configured model's default input mode (DOCSIFT_MODELS `input_mode`), through the HTTP API,
LiteLLM and the fake OpenAI server that reads the images it is sent.

The order is request > classifier version (an explicit `text` included) > the model's default >
text, on every path that builds a run: classify, classifier runs, batches, split, evaluations
and their estimate.
"""

import asyncio
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from backend.api import classify as classify_api
from backend.backends.base import ModelInfo
from backend.classification.spec import Modes, with_model_default
from backend.config import ModelConfig, Settings
from bench.harness import REPO, free_port
from tests.fake_openai import FakeOpenAI, image_parts, vision_reply
from tests.fixtures.db import make_document
from tests.vision.test_vision_api import PAGES, SCHEMA, _classify, _harness


def _models(base_url: str) -> list[ModelConfig]:
    local = {"api_base": base_url, "api_key": "none"}
    return [
        ModelConfig(  # a vision model whose pages go as images unless asked otherwise
            name="vlm-image",
            litellm_model="openai/qwen-vl",
            supports_vision=True,
            credits_per_image_page=3,
            input_mode="image",
            **local,
        ),
        ModelConfig(  # images only for pages without a text layer
            name="vlm-auto",
            litellm_model="openai/qwen-vl",
            supports_vision=True,
            input_mode="auto",
            **local,
        ),
        ModelConfig(  # auto on a text-only model: text
            name="llm-auto", litellm_model="openai/tiny", input_mode="auto", **local
        ),
    ]


@pytest.fixture
def fake_server():
    server = FakeOpenAI(vision_reply).start()
    yield server
    server.stop()


@pytest.fixture
async def llm(database_url, tmp_path, fake_server, fake_backend, monkeypatch):
    models = _models(fake_server.base_url)
    async for harness in _harness(
        database_url, tmp_path, fake_server, fake_backend, monkeypatch, models=models
    ):
        yield harness


def _image_pages(server) -> list[int]:  # noqa: ANN001 - every page image of every call
    return sorted(i.page for body in server.requests for i in image_parts(body) if not i.example)


async def test_models_show_their_default_input_mode(llm):
    tenant = await llm.tenant()
    models = (await llm.client.get("/v1/models", headers=tenant.headers)).json()["models"]
    shown = {m["name"]: m["default_input_mode"] for m in models}
    assert shown["vlm-image"] == "image" and shown["vlm-auto"] == "auto"
    assert shown["llm-auto"] == "auto" and shown["gpt-4o"] == "text" and shown["fake"] == "text"


async def test_a_model_default_of_image_sends_images_unless_the_request_says_text(
    llm, fake_server, monkeypatch
):
    fast: list[str] = []  # the fast path (text only) sees the resolved mode
    real = classify_api.classify_fast

    async def counted(state, store, spec, **kwargs):  # noqa: ANN001, ANN003, ANN202
        fast.append(spec.modes.input_mode)
        return await real(state, store, spec, **kwargs)

    monkeypatch.setattr(classify_api, "classify_fast", counted)
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, PAGES, with_file=True)

    default = await _classify(llm, tenant, doc, model="vlm-image")
    assert default.status_code == 200, default.text
    assert [i.page for i in fake_server.last_images()] == [1, 2, 3]
    assert "Invoice 7" not in fake_server.last_prompt()
    body = default.json()
    assert body["modes"]["input_mode"] == "image" and body["image_pages"] == [1, 2, 3]
    assert body["credits_used"] == 3 * 3  # the model's image rate
    assert body["usage"]["image_tokens"] > 0

    text = await _classify(llm, tenant, doc, model="vlm-image", input_mode="text")
    assert text.status_code == 200, text.text
    assert fake_server.last_images() == [] and "Invoice 7" in fake_server.last_prompt()
    body = text.json()
    assert body["modes"]["input_mode"] == "text" and body["image_pages"] == []
    assert body["credits_used"] == 3 and body["usage"]["image_tokens"] == 0
    if llm.app.state.docsift.fast_store is not None:
        assert fast == ["text"]  # the image default took run_classification

    # Idempotent retries (the ORM path) resolve the same way.
    retried = await llm.client.post(
        "/v1/classify",
        json={"document_id": doc, "classification_schema": SCHEMA, "query_model": "vlm-image"},
        headers={**tenant.headers, "Idempotency-Key": "k1"},
    )
    assert retried.status_code == 200 and retried.json()["modes"]["input_mode"] == "image"
    assert [i.page for i in fake_server.last_images()] == [1, 2, 3]


async def test_a_classifier_version_that_chose_text_keeps_text_on_an_image_model(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    headers = tenant.headers
    doc = await make_document(llm, tenant, PAGES, with_file=True)

    async def create(**modes):  # noqa: ANN003, ANN202
        body = {"name": "n", "classification_schema": SCHEMA, "query_model": "vlm-image", **modes}
        created = await llm.client.post("/v1/classifiers", json=body, headers=headers)
        assert created.status_code == 201, created.text
        return created.json()

    async def run(classifier_id: str, **extra):  # noqa: ANN003, ANN202
        fake_server.requests.clear()
        url = f"/v1/classifiers/{classifier_id}/run"
        out = await llm.client.post(url, json={"document_id": doc, **extra}, headers=headers)
        assert out.status_code == 200, out.text
        return out.json()

    chose_text = await create(input_mode="text")
    assert chose_text["modes"]["input_mode"] == "text"
    result = await run(chose_text["classifier_id"])
    assert _image_pages(fake_server) == [] and result["modes"]["input_mode"] == "text"
    # The request still outranks the version.
    result = await run(chose_text["classifier_id"], input_mode="image")
    assert _image_pages(fake_server) == [1, 2, 3] and result["modes"]["input_mode"] == "image"

    chose_nothing = await create()
    assert chose_nothing["modes"]["input_mode"] == "image"  # shown as a run would use it
    result = await run(chose_nothing["classifier_id"])
    assert _image_pages(fake_server) == [1, 2, 3] and result["modes"]["input_mode"] == "image"
    # Choosing text explicitly is a change (the model's default no longer applies): version 2.
    url = f"/v1/classifiers/{chose_nothing['classifier_id']}"
    patched = await llm.client.patch(url, json={"input_mode": "text"}, headers=headers)
    assert patched.json()["version"] == 2 and patched.json()["modes"]["input_mode"] == "text"
    again = await llm.client.patch(url, json={"input_mode": "text"}, headers=headers)
    assert again.json()["version"] == 2
    result = await run(chose_nothing["classifier_id"])
    assert _image_pages(fake_server) == [] and result["modes"]["input_mode"] == "text"
    detail = (await llm.client.get(url, headers=headers)).json()
    assert [v["modes"]["input_mode"] for v in detail["versions"]] == ["image", "text"]
    # Version 1 chose nothing: on a text model (the per-run model) it reads text.
    result = await run(chose_nothing["classifier_id"], version=1, query_model="gpt-4o")
    assert _image_pages(fake_server) == [] and result["modes"]["input_mode"] == "text"


async def test_auto_as_a_model_default_sends_images_only_for_pages_without_text(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, [PAGES[0], ""], with_file=True)
    response = await _classify(llm, tenant, doc, model="vlm-auto")
    assert response.status_code == 200, response.text
    assert [i.page for i in fake_server.last_images()] == [2]
    assert "Invoice 7" in fake_server.last_prompt()
    assert (
        response.json()["image_pages"] == [2] and response.json()["modes"]["input_mode"] == "auto"
    )
    # A text-only model configured with auto reads text (no 400, no image).
    text_only = await _classify(llm, tenant, doc, model="llm-auto")
    assert text_only.status_code == 200, text_only.text
    assert fake_server.last_images() == [] and text_only.json()["image_pages"] == []


async def _batch(llm, tenant, doc: str, **modes) -> dict:  # noqa: ANN001, ANN003
    created = await llm.client.post(
        "/v1/batches",
        json={
            "document_ids": [doc],
            "classification_schema": SCHEMA,
            "query_model": "vlm-image",
            **modes,
        },
        headers=tenant.headers,
    )
    assert created.status_code == 202, created.text
    url = f"/v1/batches/{created.json()['batch_id']}"
    for _ in range(400):
        out = (await llm.client.get(url, headers=tenant.headers)).json()
        if out["status"] == "completed":
            return out
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch not completed: {out}")


async def test_batches_split_and_evaluations_take_the_model_default(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, PAGES, with_file=True)

    fake_server.requests.clear()
    batch = await _batch(llm, tenant, doc)
    assert batch["credits_estimate"] == 3 * 3  # estimated at the image rate
    assert batch["items"][0]["result"]["modes"]["input_mode"] == "image"
    assert _image_pages(fake_server) == [1, 2, 3]
    fake_server.requests.clear()
    batch = await _batch(llm, tenant, doc, input_mode="text")  # frozen on the batch as text
    assert batch["credits_estimate"] == 3
    assert batch["items"][0]["result"]["modes"]["input_mode"] == "text"
    assert _image_pages(fake_server) == []

    fake_server.requests.clear()
    split = await llm.client.post(
        "/v1/split",
        json={"document_id": doc, "classification_schema": SCHEMA, "query_model": "vlm-image"},
        headers=tenant.headers,
    )
    assert split.status_code == 200, split.text
    # Each page once as its image; a segment of 2+ pages is then classified with its pages' images.
    sent = [sorted(i.page for i in image_parts(body)) for body in fake_server.requests]
    assert sorted(sent[:3]) == [[1], [2], [3]]
    assert all(pages == list(range(pages[0], pages[-1] + 1)) for pages in sent[3:])
    assert split.json()["modes"]["input_mode"] == "image" and split.json()["image_pages"] == [
        1,
        2,
        3,
    ]

    for mode, credits in ((None, 9), ("text", 3)):
        body = {
            "classification_schema": SCHEMA,
            "query_model": "vlm-image",
            "items": [{"document_id": doc, "expected_label": "w9"}],
        }
        if mode:
            body["input_mode"] = mode
        estimate = await llm.client.post(
            "/v1/evaluations/estimate", json=body, headers=tenant.headers
        )
        assert estimate.status_code == 200, estimate.text
        assert estimate.json()["credits_estimate"] == credits
        assert estimate.json()["input_mode"] == (mode or "image")
        fake_server.requests.clear()
        started = await llm.client.post("/v1/evaluations", json=body, headers=tenant.headers)
        assert started.status_code == 202, started.text
        url = f"/v1/evaluations/{started.json()['evaluation_id']}"
        for _ in range(400):
            shown = (await llm.client.get(url, headers=tenant.headers)).json()
            if shown["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert shown["status"] == "completed", shown
        assert shown["modes"]["input_mode"] == (mode or "image")
        assert _image_pages(fake_server) == ([] if mode == "text" else [1, 2, 3])


def test_a_default_of_images_on_a_model_that_cannot_take_them_stops_the_settings(monkeypatch):
    def load(**model) -> Settings:  # noqa: ANN003
        monkeypatch.setenv("DOCSIFT_MODELS", json.dumps([{"name": "m", **model}]))
        return Settings(_env_file=None)

    for mode in ("image", "text+image"):
        with pytest.raises(ValidationError, match="model 'm' has input_mode") as error:
            load(litellm_model="openai/tiny", input_mode=mode)
        assert "does not take images" in str(error.value)
        assert "LiteLLM's model data gives openai/tiny no supports_vision" in str(error.value)
        with pytest.raises(ValidationError, match="its supports_vision is false"):
            load(litellm_model="gpt-4o", supports_vision=False, input_mode=mode)
    with pytest.raises(ValidationError, match="input_mode"):
        load(litellm_model="gpt-4o", input_mode="pixels")
    # LiteLLM's data says gpt-4o takes images; auto suits any model.
    assert load(litellm_model="gpt-4o", input_mode="image").models[0].input_mode == "image"
    assert load(litellm_model="openai/tiny", input_mode="auto").models[0].input_mode == "auto"
    assert load(litellm_model="openai/tiny").models[0].input_mode == "text"


def test_stored_modes_keep_an_explicit_text_and_runs_rows_read_as_they_were_made():
    image_model = ModelInfo(
        name="m",
        backend="b",
        credits_per_page=1,
        confidence_method="logprobs",
        supports_vision=True,
        default_input_mode="image",
    )
    chose_text = Modes.from_stored(Modes(input_mode="text").stored())
    assert Modes(input_mode="text").stored() == {"input_mode": "text"}
    assert with_model_default(chose_text, image_model).input_mode == "text"
    # A version written before (no explicit text kept) follows the model's default.
    for legacy in (None, {"multi_label": True}):
        assert with_model_default(Modes.from_stored(legacy), image_model).input_mode == "image"
    # A run's row (result, batch, evaluation) holds the resolved mode: missing means text.
    assert with_model_default(Modes.frozen(None), image_model).input_mode == "text"
    # Defaults other than the input mode are still left out of stored rows.
    assert Modes(multi_label=False, debias="none").stored() is None
    assert Modes().stored() is None


def test_the_server_stops_at_start_up_on_such_a_default(tmp_path) -> None:  # noqa: ANN001
    """The real entry point: the process ends, its log naming the model and the fix."""
    bad = [{"name": "tiny", "litellm_model": "openai/tiny", "input_mode": "text+image"}]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DOCSIFT_DATABASE_URL": f"sqlite:///{tmp_path / 'boot.db'}",
        "DOCSIFT_STORAGE_DIR": str(tmp_path / "files"),
        "DOCSIFT_MODELS": json.dumps(bad),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    port = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "backend.asgi:app", "--port", port],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "DocSift failed to start" in done.stderr, done.stderr[-2000:]
    assert "model 'tiny' has input_mode 'text+image' but does not take images" in done.stderr
