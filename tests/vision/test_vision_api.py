"""Vision input through the HTTP API, LiteLLM and a fake OpenAI server that reads the images.

The fake server decodes each image part (PNG size, detail) and places it by the prompt's page
headers and example blocks, so these tests see exactly which pages went as images, as text, or
as both.
"""

import pytest

from backend.backends.llm import LiteLLMBackend, client
from backend.backends.llm.images import TILE_TOKENS, image_tokens, png_header, tile_tokens
from backend.config import ModelConfig
from backend.documents import service as documents_service
from tests.conftest import make_settings, start_harness
from tests.fake_openai import FakeOpenAI, image_parts, vision_reply
from tests.fixtures.db import make_document
from tests.fixtures.documents import scanned_pdf, text_pdf

SCHEMA = [
    {"label": "invoice", "description": "A request for payment"},
    {"label": "w9", "description": "A US taxpayer identification form"},
    {"label": "other", "description": "Anything else"},
]
PAGES = ["Invoice 7 from Northwind, total due 50 EUR", "Terms: net 30 days", "Thank you"]
LETTER_PX = (768, 994)  # a Letter page fitted into 768 x 1024 (2 x 2 tiles)


@pytest.fixture
def fake_server():
    server = FakeOpenAI(vision_reply).start()
    yield server
    server.stop()


async def _harness(database_url, tmp_path, fake_server, fake_backend, monkeypatch, **settings):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    values = {
        "model_backoff_seconds": 0.01,
        "model_timeout_seconds": 5.0,
        "model_total_timeout_seconds": 10.0,
        "models": [
            ModelConfig(  # a text-only model on a local server
                name="local-llm",
                litellm_model="openai/tiny",
                api_base=fake_server.base_url,
                api_key="none",
            ),
            ModelConfig(  # a local vision model, declared so in DOCSIFT_MODELS
                name="local-vlm",
                litellm_model="openai/qwen-vl",
                api_base=fake_server.base_url,
                api_key="none",
                supports_vision=True,
                credits_per_image_page=3,
            ),
        ],
        **settings,
    }
    config = make_settings(database_url, tmp_path, **values)
    backend = LiteLLMBackend(config)
    async for harness in start_harness(config, [fake_backend, backend]):
        await backend._litellm_ready()
        warm = client.CallOptions(model="openai/warm", api_base=fake_server.base_url, api_key="k")
        await client.complete(
            warm, [{"role": "user", "content": "hi"}], logprobs=False, top_logprobs=0
        )
        fake_server.requests.clear()
        yield harness


@pytest.fixture
async def llm(database_url, tmp_path, fake_server, fake_backend, monkeypatch):
    async for harness in _harness(database_url, tmp_path, fake_server, fake_backend, monkeypatch):
        yield harness


async def _classify(harness, tenant, doc_id, model="gpt-4o", **extra):
    body = {"document_id": doc_id, "classification_schema": SCHEMA, "query_model": model, **extra}
    return await harness.client.post("/v1/classify", json=body, headers=tenant.headers)


async def _balance(harness, tenant) -> int:
    return (await harness.client.get("/v1/account", headers=tenant.headers)).json()["balance"]


async def test_models_say_which_take_images_and_what_an_image_page_costs(llm):
    tenant = await llm.tenant()
    models = (await llm.client.get("/v1/models", headers=tenant.headers)).json()["models"]
    by_name = {m["name"]: m for m in models}
    # LiteLLM's data: both OpenAI models take images; DOCSIFT_MODELS says so for local-vlm.
    assert by_name["gpt-4o"]["supports_vision"] and by_name["gpt-4o-mini"]["supports_vision"]
    assert by_name["local-vlm"]["supports_vision"] and not by_name["local-llm"]["supports_vision"]
    assert by_name["local-llm"]["credits_per_image_page"] is None
    assert by_name["local-vlm"]["credits_per_image_page"] == 3
    # From LiteLLM's prices: a gpt-4o page image (765 tokens) costs less than a full text page
    # (3000 tokens), a gpt-4o-mini one (25,501 tokens at 1/17 the price) 8.5 times more.
    assert by_name["gpt-4o"]["credits_per_image_page"] == 1
    assert by_name["gpt-4o-mini"]["credits_per_image_page"] == 9


def test_published_tile_tokens_agree_with_litellms_formula():
    for model in TILE_TOKENS:
        for size in (LETTER_PX, (1024, 768), (300, 200), (2000, 4000)):
            for detail in ("low", "high"):
                assert image_tokens(model, png_header(size), detail) == tile_tokens(
                    model, *size, detail
                ), (model, size, detail)
    assert tile_tokens("gpt-4o", *LETTER_PX, "high") == 85 + 4 * 170


async def test_each_mode_sends_exactly_its_pages_and_parts(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, PAGES, with_file=True)

    text = await _classify(llm, tenant, doc, page_range="1-2")
    assert text.status_code == 200, text.text
    assert fake_server.last_images() == []
    assert "Invoice 7" in fake_server.last_prompt() and "Terms" in fake_server.last_prompt()
    assert "Thank you" not in fake_server.last_prompt()
    assert text.json()["classification"] == "invoice" and text.json()["image_pages"] == []
    assert text.json()["usage"]["image_tokens"] == 0

    image = await _classify(llm, tenant, doc, page_range="1-2", input_mode="image")
    assert image.status_code == 200, image.text
    sent = fake_server.last_images()
    assert [(i.page, i.width, i.height, i.detail) for i in sent] == [
        (1, *LETTER_PX, "high"),
        (2, *LETTER_PX, "high"),
    ]
    assert all(i.text_before == "" for i in sent)  # no page text beside the images
    prompt = fake_server.last_prompt()
    assert "Invoice 7" not in prompt and "Terms" not in prompt and "Thank you" not in prompt
    assert "--- Page 1 ---" in prompt and "<document>" in prompt  # the same template
    body = image.json()
    assert body["classification"] == "w9"  # the fake answers from the (portrait) image
    assert body["confidence_method"] == "logprobs" and body["image_pages"] == [1, 2]
    assert body["usage"]["image_tokens"] == 2 * 765 and body["modes"]["input_mode"] == "image"

    both = await _classify(llm, tenant, doc, page_range="2-3", input_mode="text+image")
    assert both.status_code == 200, both.text
    sent = fake_server.last_images()
    assert [(i.page, i.text_before) for i in sent] == [(2, PAGES[1]), (3, PAGES[2])]
    assert "Invoice 7" not in fake_server.last_prompt()
    assert both.json()["image_pages"] == [2, 3]
    account = (await llm.client.get("/v1/account", headers=tenant.headers)).json()
    (usage,) = [m for m in account["usage"]["by_model"] if m["model"] == "gpt-4o"]
    assert usage["image_tokens"] == 4 * 765 and usage["classifications"] == 3
    # Images are cached with the document: rendered once per page.
    derived = llm.settings.storage_dir / tenant.account_id / "derived" / doc
    assert sorted(p.name for p in derived.iterdir()) == ["page-1.png", "page-2.png", "page-3.png"]


async def test_auto_sends_images_only_for_pages_without_a_text_layer(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, [PAGES[0], ""], with_file=True)
    response = await _classify(llm, tenant, doc, input_mode="auto")
    assert response.status_code == 200, response.text
    assert [i.page for i in fake_server.last_images()] == [2]
    assert "Invoice 7" in fake_server.last_prompt()
    assert response.json()["image_pages"] == [2]
    # A vision model through DOCSIFT_MODELS: one text page (1) + one image page (3).
    before = await _balance(llm, tenant)
    local = await _classify(llm, tenant, doc, model="local-vlm", input_mode="auto")
    assert local.status_code == 200 and local.json()["credits_used"] == 4
    assert await _balance(llm, tenant) == before - 4
    # A text-only model in auto mode reads text only.
    text_only = await _classify(llm, tenant, doc, model="local-llm", input_mode="auto")
    assert text_only.status_code == 200 and fake_server.last_images() == []


async def test_image_tokens_count_against_the_budget(
    database_url, tmp_path, fake_server, fake_backend, monkeypatch
):
    async for harness in _harness(
        database_url, tmp_path, fake_server, fake_backend, monkeypatch, max_image_tokens=6000
    ):
        tenant = await harness.tenant(credits=1000)
        doc = await make_document(harness, tenant, PAGES, with_file=True)
        # gpt-4o: three pages at high detail are 3 x 765 tokens, within 6000.
        response = await _classify(harness, tenant, doc, input_mode="image")
        assert [(i.page, i.detail) for i in fake_server.last_images()] == [
            (1, "high"),
            (2, "high"),
            (3, "high"),
        ]
        assert response.json()["usage"]["image_tokens"] == 3 * 765
        # gpt-4o-mini bills 2833 a page even at low detail: two pages fit, high detail none.
        mini = await _classify(harness, tenant, doc, model="gpt-4o-mini", input_mode="image")
        assert mini.status_code == 200, mini.text
        assert [(i.page, i.detail) for i in fake_server.last_images()] == [(1, "low"), (2, "low")]
        assert mini.json()["usage"]["image_tokens"] == 2 * 2833
        assert mini.json()["image_pages"] == [1, 2]
        # Credits per page at the model's image rate (9), all pages of the range included.
        assert mini.json()["credits_used"] == 3 * 9


async def test_a_text_only_model_refuses_images_with_the_contract_error(llm, fake_server):
    tenant = await llm.tenant(credits=10)
    doc = await make_document(llm, tenant, PAGES, with_file=True)
    for mode in ("image", "text+image"):
        response = await _classify(llm, tenant, doc, model="local-llm", input_mode=mode)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_request" and "reads text only" in body["message"]
    assert fake_server.requests == [] and await _balance(llm, tenant) == 10


async def test_a_scan_in_image_mode_is_classified_without_ocr(llm, fake_server, monkeypatch):
    runs: list[int] = []
    real = documents_service._ocr_job

    async def counted(job, **kwargs):  # noqa: ANN001, ANN003, ANN202
        runs.append(job.page)
        return await real(job, **kwargs)

    monkeypatch.setattr(documents_service, "_ocr_job", counted)
    tenant = await llm.tenant(credits=100)
    upload = await llm.client.post(
        "/v1/documents?ocr=on_demand",
        files={"file": ("scan.pdf", scanned_pdf([PAGES[0]]), "application/pdf")},
        headers=tenant.headers,
    )
    assert upload.status_code == 201 and upload.json()["status"] == "processed"
    doc = upload.json()["document_id"]
    detail = (await llm.client.get(f"/v1/documents/{doc}", headers=tenant.headers)).json()
    assert detail["pages"] == [{"page": 1, "chars": 0, "ocr": False, "ocr_pending": True}]

    image = await _classify(llm, tenant, doc, input_mode="image")
    assert image.status_code == 200, image.text
    assert [i.page for i in fake_server.last_images()] == [1] and runs == []
    assert image.json()["classification"] == "w9"

    # A text request later needs the page's text: OCR runs then, once.
    text = await _classify(llm, tenant, doc)
    assert text.status_code == 200, text.text
    assert runs == [1] and fake_server.last_images() == []
    detail = (await llm.client.get(f"/v1/documents/{doc}", headers=tenant.headers)).json()
    page = detail["pages"][0]
    assert page["ocr"] is True and page["ocr_pending"] is False
    if page["chars"]:  # Tesseract installed: its text went to the model
        assert "Northwind" in fake_server.last_prompt()
    await _classify(llm, tenant, doc)
    assert runs == [1]


async def test_text_upload_still_ocrs_at_once_by_default(llm, monkeypatch):
    runs: list[int] = []
    real = documents_service._ocr_job

    async def counted(job, **kwargs):  # noqa: ANN001, ANN003, ANN202
        runs.append(job.page)
        return await real(job, **kwargs)

    monkeypatch.setattr(documents_service, "_ocr_job", counted)
    tenant = await llm.tenant(credits=100)
    both = text_pdf(["A page with a text layer, long enough to need no OCR at all."])
    for name, data in (("scan.pdf", scanned_pdf([PAGES[0]])), ("text.pdf", both)):
        upload = await llm.client.post(
            "/v1/documents",
            files={"file": (name, data, "application/pdf")},
            headers=tenant.headers,
        )
        assert upload.status_code == 201
    assert runs == [1]  # the scan's page only


async def test_image_mode_sends_a_classifiers_examples_as_images(llm, fake_server):
    tenant = await llm.tenant(credits=100)
    headers = tenant.headers
    created = await llm.client.post(
        "/v1/classifiers",
        json={
            "name": "forms",
            "classification_schema": SCHEMA,
            "query_model": "gpt-4o",
            "input_mode": "image",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    cid = created.json()["classifier_id"]
    for text, label in (
        ("Form W-9 Request for Taxpayer Identification", "w9"),
        (PAGES[0], "invoice"),
    ):
        example = await make_document(llm, tenant, [text], with_file=True)
        added = await llm.client.post(
            f"/v1/classifiers/{cid}/examples",
            json={"document_id": example, "label": label},
            headers=headers,
        )
        assert added.status_code in (200, 201), added.text
    doc = await make_document(
        llm, tenant, ["Request for Taxpayer Identification Number"], with_file=True
    )
    run = await llm.client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=headers
    )
    assert run.status_code == 200, run.text
    sent = fake_server.last_images()
    assert sorted(i.example for i in sent if i.example) == ["A", "B"]  # invoice: A, w9: B
    assert [i.page for i in sent if i.example is None] == [1]
    prompt = fake_server.last_prompt()
    assert "Form W-9" not in prompt and "Northwind" not in prompt  # examples went as images
    assert run.json()["usage"]["image_tokens"] == 3 * 765


async def test_an_evaluation_in_image_mode_estimates_image_credits(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, PAGES, with_file=True)
    runs = {}
    for mode in ("text", "image"):
        started = await llm.client.post(
            "/v1/evaluations",
            json={
                "classification_schema": SCHEMA,
                "query_model": "gpt-4o-mini",
                "input_mode": mode,
                "items": [{"document_id": doc, "expected_label": "w9"}],
            },
            headers=tenant.headers,
        )
        assert started.status_code == 202, started.text
        runs[mode] = started.json()
    assert runs["text"]["credits_estimate"] == 3 and runs["image"]["credits_estimate"] == 27
    for mode, run in runs.items():
        url = f"/v1/evaluations/{run['evaluation_id']}"
        shown = (await llm.client.get(url, headers=tenant.headers)).json()
        assert shown["modes"]["input_mode"] == mode  # the console's Compare view tells them apart


async def test_split_in_image_mode_sends_each_page_as_its_image(llm, fake_server):
    tenant = await llm.tenant(credits=1000)
    doc = await make_document(llm, tenant, PAGES, with_file=True)
    response = await llm.client.post(
        "/v1/split",
        json={
            "document_id": doc,
            "classification_schema": SCHEMA,
            "query_model": "gpt-4o",
            "input_mode": "image",
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    sent = [sorted(i.page for i in image_parts(body)) for body in fake_server.requests]
    # One call per page, each with that page's image only...
    assert sorted(sent[:3]) == [[1], [2], [3]]
    # ... then each segment of 2+ pages classified as one document, with its pages' images.
    segments = [s["pages"] for s in response.json()["segments"]]
    multi = [
        list(range(int(a), int(b) + 1)) for a, _, b in (s.partition("-") for s in segments) if b
    ]
    assert sorted(sent[3:]) == sorted(multi)


async def test_a_vision_model_without_a_system_role_gets_the_rules_in_its_parts(
    database_url, tmp_path, fake_server, fake_backend, monkeypatch
):
    gemma = ModelConfig(
        name="gemma-vlm",
        litellm_model="openai/gemma3",
        api_base=fake_server.base_url,
        api_key="none",
        supports_vision=True,
        supports_system_message=False,
    )
    async for harness in _harness(
        database_url, tmp_path, fake_server, fake_backend, monkeypatch, models=[gemma]
    ):
        tenant = await harness.tenant(credits=100)
        doc = await make_document(harness, tenant, PAGES[:1], with_file=True)
        response = await _classify(harness, tenant, doc, model="gemma-vlm", input_mode="image")
        assert response.status_code == 200, response.text
        sent = fake_server.requests[-1]["messages"]
        assert [m["role"] for m in sent] == ["user"]
        assert sent[0]["content"][0]["text"].startswith("You are a document classifier")
        assert [i.page for i in fake_server.last_images()] == [1]
