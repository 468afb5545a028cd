"""A saved classifier's labelled example reaches the real LLM prompt (LiteLLM to a fake server)."""

import pytest

from backend.backends.llm import LiteLLMBackend
from backend.config import ModelConfig
from tests.conftest import make_settings, start_harness
from tests.fake_openai import FakeOpenAI, codes_reply
from tests.fixtures.db import make_document

SCHEMA = [
    {"label": "invoice", "description": "A bill"},
    {"label": "contract", "description": "An agreement"},
    {"label": "other", "description": "Anything else"},
]


@pytest.fixture
async def llm_app(database_url, tmp_path):
    server = FakeOpenAI(lambda _r: codes_reply([0.2, 0.7, 0.1])).start()
    settings = make_settings(
        database_url,
        tmp_path,
        models=[
            ModelConfig(
                name="tiny-llm",
                litellm_model="openai/tiny",
                api_base=server.base_url,
                api_key="none",
            )
        ],
    )
    backend = LiteLLMBackend(settings)
    async for harness in start_harness(settings, [backend]):
        await backend._litellm_ready()
        yield harness, server
    server.stop()


async def test_the_most_similar_example_is_in_the_prompt(llm_app):
    harness, server = llm_app
    tenant = await harness.tenant()
    client = harness.client
    classifier = (
        await client.post(
            "/v1/classifiers",
            json={"name": "c", "classification_schema": SCHEMA, "query_model": "tiny-llm"},
            headers=tenant.headers,
        )
    ).json()
    cid = classifier["classifier_id"]
    example = await make_document(
        harness, tenant, ["MASTER SERVICES AGREEMENT between Acme Corp and Beta LLC, governing law"]
    )
    await client.post(
        f"/v1/classifiers/{cid}/examples",
        json={"document_id": example, "label": "contract"},
        headers=tenant.headers,
    )
    doc = await make_document(
        harness, tenant, ["This agreement is made between the parties named below"]
    )
    response = await client.post(
        f"/v1/classifiers/{cid}/run", json={"document_id": doc}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["classification"] == "contract"
    prompt = server.last_prompt()
    assert "MASTER SERVICES AGREEMENT between Acme Corp and Beta LLC" in prompt
    assert '<example answer="B">' in prompt  # contract is the second label: code B
